package screen

import (
	"strings"

	"github.com/lowkeyhq/lowkey/errcode"
)

// X keysyms by the names people and agents use (xdotool's, and common
// aliases).
var keyNames = map[string]uint32{
	"return": 0xff0d, "enter": 0xff0d, "tab": 0xff09, "escape": 0xff1b, "esc": 0xff1b,
	"backspace": 0xff08, "delete": 0xffff, "insert": 0xff63, "space": 0x20,
	"home": 0xff50, "left": 0xff51, "up": 0xff52, "right": 0xff53, "down": 0xff54,
	"page_up": 0xff55, "pageup": 0xff55, "prior": 0xff55, "page_down": 0xff56, "pagedown": 0xff56, "next": 0xff56, "end": 0xff57,
	"ctrl": 0xffe3, "control": 0xffe3, "control_l": 0xffe3, "control_r": 0xffe4,
	"shift": 0xffe1, "shift_l": 0xffe1, "shift_r": 0xffe2,
	"alt": 0xffe9, "alt_l": 0xffe9, "alt_r": 0xffea,
	"super": 0xffeb, "super_l": 0xffeb, "win": 0xffeb, "cmd": 0xffeb, "meta": 0xffeb,
	"caps_lock": 0xffe5, "menu": 0xff67, "print": 0xff61,
	"f1": 0xffbe, "f2": 0xffbf, "f3": 0xffc0, "f4": 0xffc1, "f5": 0xffc2, "f6": 0xffc3,
	"f7": 0xffc4, "f8": 0xffc5, "f9": 0xffc6, "f10": 0xffc7, "f11": 0xffc8, "f12": 0xffc9,
	"minus": '-', "plus": '+', "equal": '=', "comma": ',', "period": '.', "slash": '/',
}

// keysymOf is a character's keysym: Latin-1 is itself, the rest of
// Unicode is 0x01000000 + the code point.
func keysymOf(r rune) uint32 {
	switch {
	case r == '\n':
		return 0xff0d
	case r == '\t':
		return 0xff09
	case r >= 0x20 && r <= 0x7e, r >= 0xa0 && r <= 0xff:
		return uint32(r)
	}
	return 0x01000000 + uint32(r)
}

// keysyms reads key names ("ctrl", "a", "Return").
func keysyms(names []string) ([]uint32, error) {
	out := make([]uint32, 0, len(names))
	for _, n := range names {
		if n == "" {
			return nil, errcode.New(errcode.BadArgs, "an empty key name in a combo")
		}
		if k, ok := keyNames[strings.ToLower(n)]; ok {
			out = append(out, k)
			continue
		}
		r := []rune(n)
		if len(r) == 1 {
			out = append(out, keysymOf(r[0]))
			continue
		}
		return nil, errcode.New(errcode.BadArgs, "unknown key %q", n)
	}
	return out, nil
}
