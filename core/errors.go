package core

import (
	"errors"
	"fmt"
	"net/http"
)

// Code is a client-visible error code. The same codes are used by the MCP tools and
// the REST API.
type Code string

// Error codes of the Code Agents API.
const (
	CodeValidation         Code = "VALIDATION_ERROR"
	CodeNotFound           Code = "NOT_FOUND"
	CodeSessionActive      Code = "SESSION_ACTIVE"
	CodeSessionNotActive   Code = "SESSION_NOT_ACTIVE"
	CodeSessionArchived    Code = "SESSION_ARCHIVED"
	CodeSessionExpired     Code = "SESSION_EXPIRED"
	CodeCancelUnsupported  Code = "CANCEL_UNSUPPORTED"
	CodeCursorCancelFailed Code = "cursor_cancel_failed"
	CodeArchiveFailed      Code = "archive_failed"
	CodeInternal           Code = "INTERNAL"
)

// AllCodes lists every error code.
func AllCodes() []Code {
	return []Code{CodeValidation, CodeNotFound, CodeSessionActive, CodeSessionNotActive,
		CodeSessionArchived, CodeSessionExpired, CodeCancelUnsupported, CodeCursorCancelFailed,
		CodeArchiveFailed, CodeInternal}
}

// HTTPStatus is the REST status for a code.
func (c Code) HTTPStatus() int {
	switch c {
	case CodeValidation:
		return http.StatusBadRequest
	case CodeNotFound:
		return http.StatusNotFound
	case CodeSessionActive, CodeSessionNotActive, CodeSessionArchived, CodeSessionExpired, CodeCancelUnsupported:
		return http.StatusConflict
	case CodeCursorCancelFailed, CodeArchiveFailed:
		return http.StatusBadGateway
	default:
		return http.StatusInternalServerError
	}
}

// Error is an error a client may see: a code and a message that is safe to show.
// The cause, if any, is for logs only and never shown to the client.
type Error struct {
	Code    Code
	Message string
	// Field names the offending request field of a VALIDATION_ERROR.
	Field string
	cause error
}

func (e *Error) Error() string { return string(e.Code) + ": " + e.Message }

// Unwrap returns the internal cause.
func (e *Error) Unwrap() error { return e.cause }

// Errorf makes a client-safe error.
func Errorf(code Code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// invalid makes a VALIDATION_ERROR about one field.
func invalid(field, format string, args ...any) *Error {
	return &Error{Code: CodeValidation, Field: field, Message: field + ": " + fmt.Sprintf(format, args...)}
}

// notFound makes a NOT_FOUND error for a kind of object.
func notFound(kind, id string) *Error {
	return &Error{Code: CodeNotFound, Message: fmt.Sprintf("%s %q not found", kind, id)}
}

// ErrNotFound is returned by a Store when a row does not exist; the Service turns
// it into a NOT_FOUND error naming the object.
var ErrNotFound = errors.New("not found")

// ErrConflict is returned by a Store when a compare-and-set lost a race: the row
// was not in the expected state. The Service re-reads and decides again.
var ErrConflict = errors.New("state changed concurrently")

// Internal wraps an unexpected failure: the client sees only a generic message,
// the cause stays available to logs through errors.Unwrap.
func Internal(cause error) *Error {
	return &Error{Code: CodeInternal, Message: "internal error", cause: cause}
}

// AsError converts any error into a client-safe *Error: an *Error passes through,
// anything else becomes INTERNAL with the original as hidden cause.
func AsError(err error) *Error {
	if err == nil {
		return nil
	}
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	if errors.Is(err, ErrNotFound) {
		return &Error{Code: CodeNotFound, Message: "not found", cause: err}
	}
	return Internal(err)
}

// ErrorCode returns the code of err, INTERNAL for errors that carry none.
func ErrorCode(err error) Code {
	if err == nil {
		return ""
	}
	return AsError(err).Code
}
