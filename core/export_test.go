package core

import "time"

// Hooks for the external tests of this package.

// CapPayload is capPayload.
var CapPayload = capPayload

// SetRetrySleep replaces the wait between retries of a failed batch.
func (w *EventWriter) SetRetrySleep(f func(time.Duration)) { w.sleep = f }
