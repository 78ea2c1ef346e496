// Package errcode is the box's one vocabulary of error codes: the reason a
// device action, a pairing, a link or an API call failed, as a stable
// string that travels on the link, in the pairing exchange, in audit
// records and in the API's JSON errors.
//
// It is a top-level package because those codes cross every boundary
// (companion to hub, hub to browser, hub to the admin commands): devicectl,
// pairing, sessions and hub all return *Error, and each side tests what it
// got with errors.As or errors.Is. It knows nothing of HTTP: the hub keeps
// the one table from codes to statuses.
package errcode
