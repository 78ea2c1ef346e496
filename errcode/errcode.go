package errcode

import (
	"errors"
	"fmt"
)

// Code is a stable, machine-readable reason.
type Code string

// The codes. Their strings are on the wire and in the API: they never change.
const (
	// A request that cannot be served as asked.
	BadRequest    Code = "bad_request"
	BadJSON       Code = "bad_json"
	BadArgs       Code = "bad_args"
	BadTTL        Code = "bad_ttl"
	BadType       Code = "bad_type" // a body of a media type the endpoint does not take
	UnknownAction Code = "unknown_action"
	OutOfBounds   Code = "out_of_bounds"
	TooLarge      Code = "too_large"
	TooSlow       Code = "too_slow"

	// Who may do what.
	Unauthorized Code = "unauthorized"
	BadLogin     Code = "bad_login"
	BadToken     Code = "bad_token"
	CSRF         Code = "csrf"
	OwnerOnly    Code = "owner_only"
	NotTheBox    Code = "not_the_box"
	Denied       Code = "denied"

	// The state of things.
	NotFound      Code = "not_found"
	Exists        Code = "exists"
	AlreadySetUp  Code = "already_set_up"
	Busy          Code = "busy"
	Closed        Code = "closed"
	NoPagesOrigin Code = "no_pages_origin"

	// Device control: the toggles, the person, the computer.
	ToggleOff          Code = "toggle_off"
	NoGrant            Code = "no_grant"
	Paused             Code = "paused"
	Declined           Code = "declined"
	Cancelled          Code = "cancelled"
	DeviceOffline      Code = "device_offline"
	DeviceBusy         Code = "device_busy"
	SessionBusy        Code = "session_busy"
	BrowserUnavailable Code = "browser_unavailable"
	DesktopUnavailable Code = "desktop_unavailable"
	BrowserError       Code = "browser_error"
	NavigationFailed   Code = "navigation_failed"
	ScriptError        Code = "script_error"
	StaleRef           Code = "stale_ref"
	NotActionable      Code = "not_actionable" // covered, disabled, hidden: a person could not click it either
	DialogOpen         Code = "dialog_open"
	NoDialog           Code = "no_dialog"
	NotReady           Code = "not_ready"
	UnsupportedChar    Code = "unsupported_char"
	Timeout            Code = "timeout"
	LinkFailed         Code = "link_error"

	// Pairing and the pinned link.
	NoWindow      Code = "no_window"
	Expired       Code = "expired"
	Locked        Code = "locked"
	WrongCode     Code = "wrong_code"
	PairingLocked Code = "pairing_locked"
	TooMany       Code = "too_many_attempts"
	Revoked       Code = "revoked"
	UnknownDevice Code = "unknown_device"
	BadSignature  Code = "bad_signature"

	// The box itself.
	DiskFull     Code = "disk_full"
	BackupFailed Code = "backup_failed"
	Unsupported  Code = "unsupported" // this side of the link serves no actions
	Internal     Code = "internal"
	Failed       Code = "failed"
)

// Error is an error with a code. Message is for people and says what to
// do; Err, when set, is the cause (kept for errors.Is, never sent).
type Error struct {
	Code    Code   `json:"code"`
	Message string `json:"message"`
	Err     error  `json:"-"`
}

func (e *Error) Error() string { return e.Message }

// Unwrap gives the cause.
func (e *Error) Unwrap() error { return e.Err }

// Is makes errors.Is(err, target) true for any *Error with target's code:
// a refusal that came over the wire matches the sentinel of its code.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Code == e.Code
}

// New is an error with a code and a message.
func New(code Code, format string, a ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, a...)}
}

// Wrap is an error with a code whose cause is err; the message is msg,
// then the cause's.
func Wrap(code Code, err error, msg string) *Error {
	return &Error{Code: code, Message: msg + ": " + err.Error(), Err: err}
}

// Of is err's code, and the *Error that carries it; "" and nil when err
// has none.
func Of(err error) (Code, *Error) {
	var e *Error
	if errors.As(err, &e) {
		return e.Code, e
	}
	return "", nil
}

// Has says whether err carries code.
func Has(err error, code Code) bool {
	c, _ := Of(err)
	return c == code
}
