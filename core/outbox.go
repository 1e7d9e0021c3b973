package core

import (
	"context"
	"encoding/json"
	"fmt"
	"time"
)

// WebhookChecker decides, when a webhook URL is set, whether it may be stored.
// Core only knows the interface so that it stays stdlib-only; core/webhook
// implements it with the address policy that its dialer enforces again at
// every connection. The error's text is shown to the caller.
type WebhookChecker interface {
	CheckWebhookURL(ctx context.Context, raw string) error
}

// StatusWebhookType is the type of every status webhook.
const StatusWebhookType = "code_session.status_changed"

// PrefixWebhook starts every webhook-id. Standard Webhooks forbids a '.' in
// it (the id is part of the signed "id.timestamp.body"); ours never has one.
const PrefixWebhook = "wh-"

// statusWebhook is the body of a status webhook. Its fields are chosen so
// that it never carries a key or a prompt.
type statusWebhook struct {
	Type      string            `json:"type"`
	Timestamp time.Time         `json:"timestamp"`
	Data      statusWebhookData `json:"data"`
}

type statusWebhookData struct {
	SessionID      string  `json:"session_id"`
	OrgID          string  `json:"org_id"`
	CodeAgentID    string  `json:"code_agent_id"`
	Status         Status  `json:"status"`
	PreviousStatus *Status `json:"previous_status"`
	Seq            int64   `json:"seq"`
	PRURL          *string `json:"pr_url"`
	PRBranch       *string `json:"pr_branch"`
	Archived       bool    `json:"archived"`
}

// StatusWebhookPayload is the minified JSON body of the status webhook for a
// status event of s, where s is the session as that event's transaction
// leaves it. The store calls it inside the transaction, because only there
// is the event's seq known; core owns the shape.
func StatusWebhookPayload(s Session, ev Event) (json.RawMessage, error) {
	if ev.Type != EventStatus {
		return nil, fmt.Errorf("event %d is %s, not a status event", ev.Seq, ev.Type)
	}
	var p struct {
		Status         Status `json:"status"`
		PreviousStatus Status `json:"previous_status"`
		Archived       bool   `json:"archived"`
	}
	if err := json.Unmarshal(ev.Payload, &p); err != nil {
		return nil, fmt.Errorf("status event %d: %w", ev.Seq, err)
	}
	d := statusWebhookData{
		SessionID:   s.ID,
		OrgID:       s.OrgID,
		CodeAgentID: s.CodeAgentID,
		Status:      p.Status,
		Seq:         ev.Seq,
		PRURL:       s.PRURL,
		PRBranch:    s.PRBranch,
		Archived:    s.Archived || p.Archived,
	}
	if p.PreviousStatus != "" {
		d.PreviousStatus = &p.PreviousStatus
	}
	return json.Marshal(statusWebhook{Type: StatusWebhookType, Timestamp: ev.CreatedAt.UTC(), Data: d})
}

// DeliveryState is where a webhook delivery stands.
type DeliveryState string

// Delivery states. Only pending deliveries are ever attempted.
const (
	// DeliveryPending waits for its next attempt.
	DeliveryPending DeliveryState = "pending"
	// DeliveryDelivered got a 2xx answer.
	DeliveryDelivered DeliveryState = "delivered"
	// DeliveryFailed gave up after the last retry.
	DeliveryFailed DeliveryState = "failed"
	// DeliveryCancelled was pending when the session's webhook URL changed.
	DeliveryCancelled DeliveryState = "cancelled"
	// DeliveryStopped was pending when its receiver answered 410 Gone.
	DeliveryStopped DeliveryState = "stopped"
)

// Delivery is one status webhook in the outbox: inserted with its status
// event, sent until it is delivered or given up. ID is the webhook-id and is
// the same on every attempt, before and after a crash.
type Delivery struct {
	ID        string
	SessionID string
	// Seq is the seq of the status event it reports.
	Seq int64
	URL string
	// Payload is the exact body that is signed and sent.
	Payload       json.RawMessage
	State         DeliveryState
	Attempts      int
	NextAttemptAt time.Time
	CreatedAt     time.Time
}

// DeliveryAttempt is the outcome of one attempt, recorded in one
// transaction with the webhook events that log it.
type DeliveryAttempt struct {
	ID        string
	SessionID string
	URL       string
	// State is what the delivery becomes: pending (retry at NextAttemptAt),
	// delivered, failed (given up) or stopped (410: and so is every other
	// pending delivery of this session to URL, and none is queued to it again).
	State         DeliveryState
	NextAttemptAt time.Time
	At            time.Time
	// HTTPStatus is the receiver's status code, 0 when none came.
	HTTPStatus int
	// Error says why the attempt failed; never the receiver's body.
	Error string
	// Events are logged in the session's log (type webhook).
	Events []EventInput
}

// WebhookSecret is a sealed signing secret of this installation.
type WebhookSecret struct {
	ID string
	// Sealed is the whsec_ secret sealed by the Box for PurposeWebhookSecret,
	// with an empty org and ID as row.
	Sealed    []byte
	CreatedAt time.Time
	// RetiredAt is when a rotation replaced it; nil for the current secret.
	RetiredAt *time.Time
}
