package hub

import (
	"context"
	"errors"
	"net/http"

	"github.com/lowkeyhq/lowkey/devicectl"
	"github.com/lowkeyhq/lowkey/errcode"
)

// statusOf is the one table from error codes to HTTP statuses. A code not
// in it came from a computer and is that computer's failure: 502.
var statusOf = map[errcode.Code]int{
	errcode.BadRequest:    http.StatusBadRequest,
	errcode.BadJSON:       http.StatusBadRequest,
	errcode.BadArgs:       http.StatusBadRequest,
	errcode.BadTTL:        http.StatusBadRequest,
	errcode.UnknownAction: http.StatusBadRequest,
	errcode.OutOfBounds:   http.StatusBadRequest,
	errcode.BadType:       http.StatusUnsupportedMediaType,
	errcode.TooLarge:      http.StatusRequestEntityTooLarge,
	errcode.TooSlow:       http.StatusRequestTimeout,

	errcode.Unauthorized: http.StatusUnauthorized,
	errcode.BadLogin:     http.StatusUnauthorized,
	errcode.BadToken:     http.StatusForbidden,
	errcode.CSRF:         http.StatusForbidden,
	errcode.OwnerOnly:    http.StatusForbidden,
	errcode.NotTheBox:    http.StatusForbidden,
	errcode.Denied:       http.StatusForbidden,

	errcode.NotFound:      http.StatusNotFound,
	errcode.Exists:        http.StatusConflict,
	errcode.AlreadySetUp:  http.StatusConflict,
	errcode.Busy:          http.StatusConflict,
	errcode.Closed:        http.StatusConflict,
	errcode.NoPagesOrigin: http.StatusConflict,

	errcode.ToggleOff:          http.StatusConflict,
	errcode.NoGrant:            http.StatusConflict,
	errcode.Paused:             http.StatusConflict,
	errcode.Declined:           http.StatusConflict,
	errcode.Cancelled:          http.StatusConflict,
	errcode.DeviceOffline:      http.StatusConflict,
	errcode.BrowserUnavailable: http.StatusConflict,
	errcode.DesktopUnavailable: http.StatusConflict,
	errcode.StaleRef:           http.StatusConflict,
	errcode.NotActionable:      http.StatusConflict,
	errcode.DialogOpen:         http.StatusConflict,
	errcode.NoDialog:           http.StatusConflict,
	errcode.NotReady:           http.StatusConflict,
	errcode.DeviceBusy:         http.StatusTooManyRequests,
	errcode.SessionBusy:        http.StatusTooManyRequests,
	errcode.TooMany:            http.StatusTooManyRequests,
	errcode.PairingLocked:      http.StatusTooManyRequests,
	errcode.Timeout:            http.StatusGatewayTimeout,

	errcode.DiskFull:     http.StatusInsufficientStorage,
	errcode.BackupFailed: http.StatusInternalServerError,
	errcode.Internal:     http.StatusInternalServerError,
}

// Status is the HTTP status the API answers code with.
func Status(code errcode.Code) int {
	if s, ok := statusOf[code]; ok {
		return s
	}
	return http.StatusBadGateway
}

// apiError is the API's JSON error body: {"error": {"code", "message"}}.
type apiError struct {
	Error *errcode.Error `json:"error"`
}

// writeError answers with err: its code and words, the status from the
// table; an error without a code is the box's own failure (500).
func writeError(w http.ResponseWriter, err error) {
	_, e := errcode.Of(err)
	if e == nil {
		e = &errcode.Error{Code: errcode.Internal, Message: err.Error()}
	}
	writeJSON(w, Status(e.Code), apiError{Error: &errcode.Error{Code: e.Code, Message: e.Message}})
}

// fail answers with code and msg.
func fail(w http.ResponseWriter, code errcode.Code, msg string) {
	writeError(w, &errcode.Error{Code: code, Message: msg})
}

// actionError answers a device action that did not happen: the gate's or
// the computer's refusal as it is, the link's and the clock's in words.
func actionError(w http.ResponseWriter, err error) {
	switch {
	case errors.Is(err, devicectl.ErrLinkClosed):
		fail(w, errcode.DeviceOffline, err.Error())
	case errors.Is(err, context.DeadlineExceeded):
		fail(w, errcode.Timeout, "the computer did not answer in time")
	case errors.Is(err, context.Canceled):
		fail(w, errcode.Cancelled, "the action was cancelled")
	default:
		if c, _ := errcode.Of(err); c == "" {
			err = errcode.Wrap(errcode.LinkFailed, err, "the link failed")
		}
		writeError(w, err)
	}
}
