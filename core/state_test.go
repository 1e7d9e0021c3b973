package core

import "testing"

// TestTransitions checks every pair of statuses against the state machine of
// DESIGN.md, so a changed table fails here first.
func TestTransitions(t *testing.T) {
	allowed := map[[2]Status]bool{
		{StatusPending, StatusCreating}:   true,
		{StatusPending, StatusCancelled}:  true,
		{StatusPending, StatusError}:      true,
		{StatusCreating, StatusRunning}:   true,
		{StatusCreating, StatusCancelled}: true,
		{StatusCreating, StatusError}:     true,
		{StatusRunning, StatusFinished}:   true,
		{StatusRunning, StatusError}:      true,
		{StatusRunning, StatusCancelled}:  true,
		{StatusRunning, StatusExpired}:    true,
		{StatusFinished, StatusCreating}:  true,
		{StatusFinished, StatusExpired}:   true,
		{StatusError, StatusCreating}:     true,
		{StatusError, StatusExpired}:      true,
		{StatusCancelled, StatusCreating}: true,
		{StatusCancelled, StatusExpired}:  true,
	}
	for _, from := range AllStatuses() {
		for _, to := range AllStatuses() {
			want := allowed[[2]Status{from, to}]
			if got := CanTransition(from, to); got != want {
				t.Errorf("CanTransition(%s, %s) = %v, want %v", from, to, got, want)
			}
		}
	}
}

func TestCheckOperation(t *testing.T) {
	tests := []struct {
		op       Operation
		status   Status
		archived bool
		want     Code // "" = allowed
	}{
		{OpSend, StatusPending, false, ""},
		{OpSend, StatusCreating, false, ""},
		{OpSend, StatusRunning, false, ""},
		{OpSend, StatusFinished, false, ""},
		{OpSend, StatusError, false, ""},
		{OpSend, StatusCancelled, false, ""},
		{OpSend, StatusExpired, false, CodeSessionExpired},
		{OpSend, StatusFinished, true, CodeSessionArchived},
		{OpSend, StatusExpired, true, CodeSessionArchived},
		{OpCancel, StatusPending, false, ""},
		{OpCancel, StatusCreating, false, ""},
		{OpCancel, StatusRunning, false, ""},
		{OpCancel, StatusFinished, false, CodeSessionNotActive},
		{OpCancel, StatusError, false, CodeSessionNotActive},
		{OpCancel, StatusCancelled, false, CodeSessionNotActive},
		{OpCancel, StatusExpired, false, CodeSessionNotActive},
		{OpCancel, StatusFinished, true, CodeSessionNotActive},
		{OpArchive, StatusPending, false, CodeSessionActive},
		{OpArchive, StatusCreating, false, CodeSessionActive},
		{OpArchive, StatusRunning, false, CodeSessionActive},
		{OpArchive, StatusFinished, false, ""},
		{OpArchive, StatusError, false, ""},
		{OpArchive, StatusCancelled, false, ""},
		{OpArchive, StatusExpired, false, ""},
		{OpUpdate, StatusRunning, false, ""},
		{OpUpdate, StatusFinished, true, CodeSessionArchived},
	}
	for _, tt := range tests {
		got := ErrorCode(CheckOperation(tt.op, tt.status, tt.archived))
		if got != tt.want {
			t.Errorf("CheckOperation(%s, %s, archived=%v) = %q, want %q", tt.op, tt.status, tt.archived, got, tt.want)
		}
	}
}

func TestCodeHTTPStatus(t *testing.T) {
	want := map[Code]int{
		CodeValidation: 400, CodeNotFound: 404, CodeSessionActive: 409, CodeSessionNotActive: 409,
		CodeSessionArchived: 409, CodeSessionExpired: 409, CodeCancelUnsupported: 409,
		CodeCursorCancelFailed: 502, CodeArchiveFailed: 502, CodeInternal: 500,
	}
	for _, c := range AllCodes() {
		if got := c.HTTPStatus(); got != want[c] {
			t.Errorf("%s.HTTPStatus() = %d, want %d", c, got, want[c])
		}
	}
}
