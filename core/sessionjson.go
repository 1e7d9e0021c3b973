package core

import (
	"encoding/json"
	"strconv"
	"time"
)

// Sessions and messages are what a REST server answers most (GET of a
// session, the lists), so, like events, they are written straight into one
// buffer: through encoding/json's reflection and its second pass over each
// nested MarshalJSON they cost five times as much. The fields and their
// order are those of the struct tags; a test fills every field and
// compares with encoding/json, so a field added to the struct and not here
// fails it.

// AppendJSON appends s as one JSON object.
func (s Session) AppendJSON(b []byte) []byte {
	b = append(b, '{')
	return append(s.appendFields(b), '}')
}

// appendFields appends s's members without the braces, so SessionDetail
// can add its messages.
func (s Session) appendFields(b []byte) []byte {
	b = append(b, `"id":`...)
	b = appendJSONString(b, s.ID)
	b = append(b, `,"org_id":`...)
	b = appendJSONString(b, s.OrgID)
	b = append(b, `,"code_agent_id":`...)
	b = appendJSONString(b, s.CodeAgentID)
	b = append(b, `,"cursor_agent_id":`...)
	b = appendJSONStringPtr(b, s.CursorAgentID)
	b = append(b, `,"repo_url":`...)
	b = appendJSONString(b, s.RepoURL)
	b = append(b, `,"starting_ref":`...)
	b = appendJSONString(b, s.StartingRef)
	b = append(b, `,"status":`...)
	b = appendJSONString(b, string(s.Status))
	b = append(b, `,"latest_run_id":`...)
	b = appendJSONStringPtr(b, s.LatestRunID)
	b = append(b, `,"pr_url":`...)
	b = appendJSONStringPtr(b, s.PRURL)
	b = append(b, `,"pr_branch":`...)
	b = appendJSONStringPtr(b, s.PRBranch)
	b = append(b, `,"usage":`...)
	b = s.Usage.appendJSON(b)
	b = append(b, `,"error":`...)
	b = appendJSONStringPtr(b, s.Error)
	b = append(b, `,"archived":`...)
	b = strconv.AppendBool(b, s.Archived)
	b = append(b, `,"webhook_url":`...)
	b = appendJSONStringPtr(b, s.WebhookURL)
	b = append(b, `,"model_id":`...)
	b = appendJSONString(b, s.ModelID)
	b = append(b, `,"model_params":`...)
	b = appendJSONValue(b, s.ModelParams)
	b = append(b, `,"auto_create_pr":`...)
	b = strconv.AppendBool(b, s.AutoCreatePR)
	b = append(b, `,"work_on_current_branch":`...)
	b = strconv.AppendBool(b, s.WorkOnCurrentBranch)
	b = append(b, `,"skip_reviewer_request":`...)
	b = strconv.AppendBool(b, s.SkipReviewerRequest)
	b = append(b, `,"runtime":`...)
	b = appendJSONString(b, s.Runtime)
	b = append(b, `,"last_event_seq":`...)
	b = strconv.AppendInt(b, s.LastEventSeq, 10)
	b = append(b, `,"last_event_at":`...)
	b = appendJSONTimePtr(b, s.LastEventAt)
	b = append(b, `,"created_by":`...)
	b = appendJSONString(b, s.CreatedBy)
	b = append(b, `,"created_at":`...)
	b = appendJSONTime(b, s.CreatedAt)
	b = append(b, `,"started_at":`...)
	b = appendJSONTimePtr(b, s.StartedAt)
	b = append(b, `,"completed_at":`...)
	return appendJSONTimePtr(b, s.CompletedAt)
}

// MarshalJSON writes a Session with its times in TimeFormat.
func (s Session) MarshalJSON() ([]byte, error) {
	return s.AppendJSON(make([]byte, 0, 768)), nil
}

// AppendJSON appends d as one JSON object: the session's members and its
// messages.
func (d SessionDetail) AppendJSON(b []byte) []byte {
	b = append(b, '{')
	b = d.Session.appendFields(b)
	b = append(b, `,"messages":`...)
	if d.Messages == nil {
		b = append(b, "null"...)
	} else {
		b = append(b, '[')
		for i, m := range d.Messages {
			if i > 0 {
				b = append(b, ',')
			}
			b = m.AppendJSON(b)
		}
		b = append(b, ']')
	}
	return append(b, '}')
}

// MarshalJSON writes a SessionDetail; without it, Session's method would
// drop the messages.
func (d SessionDetail) MarshalJSON() ([]byte, error) {
	size := 768
	for _, m := range d.Messages {
		size += 384 + len(m.Prompt)
	}
	return d.AppendJSON(make([]byte, 0, size)), nil
}

// AppendJSON appends m as one JSON object.
func (m Message) AppendJSON(b []byte) []byte {
	b = append(b, `{"id":`...)
	b = appendJSONString(b, m.ID)
	b = append(b, `,"session_id":`...)
	b = appendJSONString(b, m.SessionID)
	b = append(b, `,"cursor_run_id":`...)
	b = appendJSONStringPtr(b, m.CursorRunID)
	b = append(b, `,"role":`...)
	b = appendJSONString(b, m.Role)
	b = append(b, `,"prompt":`...)
	b = appendJSONString(b, m.Prompt)
	b = append(b, `,"status":`...)
	b = appendJSONString(b, string(m.Status))
	b = append(b, `,"result_text":`...)
	b = appendJSONStringPtr(b, m.ResultText)
	b = append(b, `,"duration_ms":`...)
	b = appendJSONIntPtr(b, m.DurationMS)
	b = append(b, `,"usage":`...)
	b = m.Usage.appendJSON(b)
	b = append(b, `,"pr_url":`...)
	b = appendJSONStringPtr(b, m.PRURL)
	b = append(b, `,"error":`...)
	b = appendJSONStringPtr(b, m.Error)
	b = append(b, `,"started_at":`...)
	b = appendJSONTimePtr(b, m.StartedAt)
	b = append(b, `,"completed_at":`...)
	b = appendJSONTimePtr(b, m.CompletedAt)
	b = append(b, `,"created_at":`...)
	b = appendJSONTime(b, m.CreatedAt)
	return append(b, '}')
}

// MarshalJSON writes a Message with its times in TimeFormat.
func (m Message) MarshalJSON() ([]byte, error) {
	return m.AppendJSON(make([]byte, 0, 384+len(m.Prompt))), nil
}

// appendJSON appends u as encoding/json would: null for nil.
func (u *Usage) appendJSON(b []byte) []byte {
	if u == nil {
		return append(b, "null"...)
	}
	return appendJSONValue(b, *u)
}

// appendJSONValue appends what encoding/json makes of v: for the rare and
// small members (usage, model parameters) reflection is cheap enough.
func appendJSONValue(b []byte, v any) []byte {
	raw, err := json.Marshal(v)
	if err != nil {
		// A model parameter that JSON cannot hold (a NaN) never came
		// through JSON; null is what a reader can still parse.
		return append(b, "null"...)
	}
	return append(b, raw...)
}

func appendJSONIntPtr(b []byte, n *int64) []byte {
	if n == nil {
		return append(b, "null"...)
	}
	return strconv.AppendInt(b, *n, 10)
}

func appendJSONTime(b []byte, t time.Time) []byte {
	b = append(b, '"')
	b = AppendTime(b, t)
	return append(b, '"')
}

func appendJSONTimePtr(b []byte, t *time.Time) []byte {
	if t == nil {
		return append(b, "null"...)
	}
	return appendJSONTime(b, *t)
}
