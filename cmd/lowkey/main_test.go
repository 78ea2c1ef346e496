package main

import "testing"

// Sizes take the units people write, and a wrong one says what to write.
func TestSizeFlagTakesHumanUnits(t *testing.T) {
	for in, want := range map[string]int64{"512MiB": 512 << 20, "2GiB": 2 << 30, "1048576": 1 << 20, "64 MiB": 64 << 20} {
		var s sizeFlag
		if err := s.Set(in); err != nil || int64(s) != want {
			t.Errorf("%q: %d %v, want %d", in, s, err, want)
		}
	}
	var s sizeFlag
	if err := s.Set("lots"); err == nil {
		t.Error(`"lots" was taken as a size`)
	}
}
