package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/flapjack-dev/flapjack/core"
)

// exitError carries a specific exit status.
type exitError struct {
	code int
	msg  string
}

func (e exitError) Error() string { return e.msg }

// Exit statuses of the scripting commands.
const (
	exitFailed      = 1 // an error, or --wait on a session that ended in error
	exitUsage       = 2
	exitStopped     = 3 // --wait on a session that was cancelled or expired
	exitUnreachable = 4
	exitInterrupted = 130
)

// exitForStatus maps a terminal session status to the exit status of --wait.
func exitForStatus(s core.Status) int {
	switch s {
	case core.StatusFinished:
		return 0
	case core.StatusError:
		return exitFailed
	default:
		return exitStopped
	}
}

// spinner shows elapsed time and the session's status on stderr while a
// command waits, only when stderr is a terminal.
type spinner struct {
	w       io.Writer
	enabled bool
	mu      sync.Mutex
	status  string
	start   time.Time
	shown   bool
	stop    chan struct{}
	done    chan struct{}
}

func startSpinner(w io.Writer, enabled bool, id string) *spinner {
	s := &spinner{w: w, enabled: enabled, start: time.Now(), status: "waiting", stop: make(chan struct{}), done: make(chan struct{})}
	if !enabled {
		close(s.done)
		return s
	}
	go func() {
		defer close(s.done)
		frames := []rune("⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏")
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for i := 0; ; i++ {
			s.mu.Lock()
			elapsed := time.Since(s.start).Truncate(time.Second)
			fmt.Fprintf(s.w, "\r\033[K%c %s %s %s", frames[i%len(frames)], safeText(id), safeText(s.status), elapsed)
			s.shown = true
			s.mu.Unlock()
			select {
			case <-s.stop:
				return
			case <-t.C:
			}
		}
	}()
	return s
}

// set changes the status shown.
func (s *spinner) set(status string) {
	s.mu.Lock()
	s.status = status
	s.mu.Unlock()
}

// pause clears the spinner line while fn writes, so output never interleaves.
func (s *spinner) pause(fn func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.shown {
		fmt.Fprint(s.w, "\r\033[K")
		s.shown = false
	}
	fn()
}

// end stops the spinner and clears its line.
func (s *spinner) end() {
	if s.enabled {
		close(s.stop)
	}
	<-s.done
	s.pause(func() {})
}

// follower reads a session's log until the session is terminal.
type follower struct {
	api     api
	p       *printer
	spin    *spinner
	stderr  io.Writer
	id      string
	since   int64
	print   bool
	retries time.Duration // how long to keep retrying an unreachable server
}

// waitSeconds is the long-poll used while following: the API's maximum.
const waitSeconds = core.MaxWaitSeconds

// run follows until the session is terminal and returns it. Events are printed
// as they arrive when print is set. A dropped connection is retried from the
// last seq seen, so nothing is skipped or printed twice.
func (f *follower) run(ctx context.Context) (core.SessionDetail, error) {
	var failingSince time.Time
	limit := core.MaxEventLimit
	// A session that already ended needs no long poll.
	if sess, err := f.api.GetSession(ctx, f.id); err != nil {
		return core.SessionDetail{}, err
	} else if sess.Status.Terminal() && f.since >= sess.LastEventSeq {
		return sess, nil
	}
	for {
		since, wait := f.since, waitSeconds
		page, err := f.api.ListEvents(ctx, f.id, core.EventsInput{Since: &since, Limit: &limit, WaitSeconds: &wait})
		var unreachable unreachableError
		if errors.As(err, &unreachable) && ctx.Err() == nil {
			if failingSince.IsZero() {
				failingSince = time.Now()
				f.spin.pause(func() {
					fmt.Fprintf(f.stderr, "flapjack: connection lost (%v); retrying from seq %d\n", unreachable.err, f.since)
				})
			}
			if time.Since(failingSince) > f.retries {
				return core.SessionDetail{}, err
			}
			select {
			case <-ctx.Done():
				return core.SessionDetail{}, ctx.Err()
			case <-time.After(time.Second):
			}
			continue
		}
		if err != nil {
			return core.SessionDetail{}, err
		}
		failingSince = time.Time{}
		sawStatus := false
		for _, e := range page.Events {
			if f.print {
				var perr error
				f.spin.pause(func() { perr = f.p.event(e) })
				if perr != nil {
					return core.SessionDetail{}, perr
				}
			}
			if e.Type == core.EventStatus {
				sawStatus = true
				f.spin.set(payloadString(e.Payload, "status"))
			}
			f.since = e.Seq
		}
		if len(page.Events) == limit {
			continue // more to read at once
		}
		if !sawStatus && len(page.Events) > 0 {
			continue
		}
		sess, err := f.api.GetSession(ctx, f.id)
		if err != nil {
			if errors.As(err, &unreachable) && ctx.Err() == nil {
				continue
			}
			return core.SessionDetail{}, err
		}
		f.spin.set(string(sess.Status))
		if sess.Status.Terminal() && f.since >= sess.LastEventSeq {
			return sess, nil
		}
	}
}
