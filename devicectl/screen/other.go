//go:build !linux

package screen

// Open says desktop control is not available on this system yet.
func Open(string) (*Screen, error) { return nil, ErrUnsupported }
