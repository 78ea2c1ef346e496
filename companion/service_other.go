//go:build !windows

package companion

import "errors"

func installRunKey(string) error { return errors.New("a startup entry is Windows' own") }

func removeRunKey() error { return errors.New("a startup entry is Windows' own") }
