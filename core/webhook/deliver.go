package webhook

import (
	"bytes"
	"cmp"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/flapjack-dev/flapjack/core"
)

// Delivery defaults.
const (
	// DefaultTimeout bounds one attempt, connect to last byte; the spec
	// recommends 15 to 30 seconds.
	DefaultTimeout = 15 * time.Second
	// defaultPoll is how often an idle loop asks whether anything changed
	// (PRAGMA data_version, no table read).
	defaultPoll = 250 * time.Millisecond
	// defaultWorkers bounds concurrent attempts (to different sessions).
	defaultWorkers = 4
	// dueBatch bounds one read of due deliveries.
	dueBatch = 100
	// maxRetryAfter caps a receiver's Retry-After.
	maxRetryAfter = 24 * time.Hour
	// bodyLimit is how much of a receiver's answer is read (and discarded)
	// so the connection can be reused; it is never stored or shown.
	bodyLimit = 64 << 10
	// recordTimeout bounds writing an attempt's outcome after a shutdown began.
	recordTimeout = 5 * time.Second
	// errorPause keeps a worker that hit an internal error (database, secrets)
	// from retrying in a tight loop.
	errorPause = time.Second
)

// retrySchedule is the delay after each failed attempt: the first seven
// attempts of the Standard Webhooks example schedule (about 17.5 hours).
func retrySchedule() []time.Duration {
	return []time.Duration{5 * time.Second, 5 * time.Minute, 30 * time.Minute, 2 * time.Hour, 5 * time.Hour, 10 * time.Hour}
}

// DefaultBackoff returns the delay before the next attempt after failures
// failed ones, with ±20% jitter so receivers that failed together are not
// hit together again; ok is false when it is time to give up.
func DefaultBackoff(failures int) (time.Duration, bool) {
	s := retrySchedule()
	if failures < 1 || failures > len(s) {
		return 0, false
	}
	d := s[failures-1]
	return d + time.Duration(rand.Int64N(int64(d)*2/5+1)) - d/5, true
}

// Outbox is what the delivery loop needs from the store; *store.Store is one.
type Outbox interface {
	SecretStore
	// DueDeliveries returns up to limit pending deliveries due at now.
	DueDeliveries(ctx context.Context, now time.Time, limit int) ([]core.Delivery, error)
	// NextDeliveryAt returns when the earliest pending delivery is due.
	NextDeliveryAt(ctx context.Context) (time.Time, bool, error)
	// RecordDeliveryAttempt records an attempt and its events atomically.
	RecordDeliveryAttempt(ctx context.Context, a core.DeliveryAttempt) error
	// DataVersion changes when another connection commits.
	DataVersion(ctx context.Context) (int64, error)
}

// Config wires a Deliverer.
type Config struct {
	Outbox Outbox
	Box    *core.Box
	// Policy decides which addresses may be dialled; nil is NewPolicy(false, nil).
	Policy *Policy
	Clock  core.Clock
	// Backoff decides retries (DefaultBackoff when nil).
	Backoff func(failures int) (time.Duration, bool)
	// Timeout bounds one attempt (DefaultTimeout when zero).
	Timeout time.Duration
	// PollInterval is how often an idle loop checks for changes (250ms).
	PollInterval time.Duration
	// Workers bounds concurrent attempts (4).
	Workers int
	// TLSConfig is for tests that trust their own receiver's certificate.
	TLSConfig *tls.Config
	Logger    *slog.Logger
}

// Deliverer sends due deliveries from the outbox. Run it next to the runner:
// there is one per data directory, so a delivery is never attempted twice at
// once. Each session's deliveries are attempted one at a time, in seq order;
// a retried one may arrive after a later one, so receivers order by data.seq.
type Deliverer struct {
	cfg     Config
	secrets *Secrets
	client  *http.Client
	sem     chan struct{}
	// finished is signalled when a worker ends, so the loop looks again.
	finished chan struct{}

	mu       sync.Mutex
	inflight map[string]bool
	// ended counts finished workers; endedAt is the count when each
	// session's last worker finished. A read of the due rows that began
	// before a session's worker finished may still list what that worker
	// delivered, so dispatch leaves such a session to the next look.
	ended   uint64
	endedAt map[string]uint64
	wg      sync.WaitGroup
}

// New returns a Deliverer.
func New(cfg Config) *Deliverer {
	if cfg.Policy == nil {
		cfg.Policy = NewPolicy(false, nil)
	}
	if cfg.Clock == nil {
		cfg.Clock = core.SystemClock{}
	}
	if cfg.Backoff == nil {
		cfg.Backoff = DefaultBackoff
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.PollInterval <= 0 {
		cfg.PollInterval = defaultPoll
	}
	if cfg.Workers <= 0 {
		cfg.Workers = defaultWorkers
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	tr := &http.Transport{
		Proxy:                  nil, // never a proxy from the environment: it would dial for us, unchecked
		DialContext:            cfg.Policy.DialContext,
		TLSClientConfig:        cfg.TLSConfig,
		TLSHandshakeTimeout:    10 * time.Second,
		MaxIdleConnsPerHost:    2,
		IdleConnTimeout:        90 * time.Second,
		MaxResponseHeaderBytes: 64 << 10,
		ForceAttemptHTTP2:      true,
	}
	client := &http.Client{
		Transport: tr,
		Timeout:   cfg.Timeout,
		// A 3xx is a failed delivery: following it would let a receiver
		// point us anywhere, and the spec says to fix the URL instead.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	return &Deliverer{
		cfg:      cfg,
		secrets:  NewSecrets(cfg.Outbox, cfg.Box, cfg.Clock),
		client:   client,
		sem:      make(chan struct{}, cfg.Workers),
		finished: make(chan struct{}, 1),
		inflight: map[string]bool{}, endedAt: map[string]uint64{},
	}
}

// Run delivers until ctx ends, then waits for attempts in flight (which a
// cancelled ctx stops; they are sent again, same id, by the next runner).
// Idle, it only asks the database every PollInterval whether anything
// changed, and reads due deliveries when something did or one falls due.
func (d *Deliverer) Run(ctx context.Context) error {
	defer d.client.CloseIdleConnections()
	defer d.wg.Wait()
	tick := time.NewTicker(d.cfg.PollInterval)
	defer tick.Stop()
	lastVersion := int64(-1)
	var next time.Time
	hasNext, look := false, true
	for {
		if look {
			look = false
			if err := d.dispatch(ctx); err != nil && ctx.Err() == nil {
				d.cfg.Logger.Error("webhooks: reading the outbox", "err", err)
			}
			var err error
			if next, hasNext, err = d.cfg.Outbox.NextDeliveryAt(ctx); err != nil && ctx.Err() == nil {
				d.cfg.Logger.Error("webhooks: reading the outbox", "err", err)
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-d.finished:
			look = true
		case <-tick.C:
			// A due row that is in flight is no reason to look: its worker
			// signals finished.
			if hasNext && !d.cfg.Clock.Now().Before(next) && !d.busy() {
				look = true
			}
			if v, err := d.cfg.Outbox.DataVersion(ctx); err == nil && v != lastVersion {
				lastVersion, look = v, true
			}
		}
	}
}

// DeliverDue attempts every delivery due now and returns when they are done.
// Tests drive the loop with it step by step.
func (d *Deliverer) DeliverDue(ctx context.Context) error {
	err := d.dispatch(ctx)
	d.wg.Wait()
	return err
}

func (d *Deliverer) busy() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.inflight) > 0
}

// dispatch starts a worker for each session with due deliveries and no
// worker yet.
func (d *Deliverer) dispatch(ctx context.Context) error {
	d.mu.Lock()
	readAt := d.ended
	d.mu.Unlock()
	due, err := d.cfg.Outbox.DueDeliveries(ctx, d.cfg.Clock.Now(), dueBatch)
	if err != nil {
		return err
	}
	bySession := map[string][]core.Delivery{}
	var order []string
	for _, del := range due {
		if bySession[del.SessionID] == nil {
			order = append(order, del.SessionID)
		}
		bySession[del.SessionID] = append(bySession[del.SessionID], del)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	for sid, at := range d.endedAt {
		if at <= readAt {
			delete(d.endedAt, sid) // this read saw what that worker wrote
		}
	}
	for _, sid := range order {
		if d.inflight[sid] || d.endedAt[sid] > readAt || ctx.Err() != nil {
			continue // in flight, or finished since the read: the next look
		}
		list := bySession[sid]
		slices.SortFunc(list, func(a, b core.Delivery) int { return cmp.Compare(a.Seq, b.Seq) })
		d.inflight[sid] = true
		d.wg.Add(1)
		go func() {
			defer d.wg.Done()
			defer func() {
				d.mu.Lock()
				delete(d.inflight, sid)
				d.ended++
				d.endedAt[sid] = d.ended
				d.mu.Unlock()
				select {
				case d.finished <- struct{}{}:
				default:
				}
			}()
			select {
			case d.sem <- struct{}{}:
			case <-ctx.Done():
				return
			}
			defer func() { <-d.sem }()
			for _, del := range list {
				if ctx.Err() != nil || !d.attempt(ctx, del) {
					return
				}
			}
		}()
	}
	return nil
}

// attempt sends one delivery and records the outcome. It returns false when
// the worker should stop (shutdown, or an internal error after a pause).
func (d *Deliverer) attempt(ctx context.Context, del core.Delivery) bool {
	log := d.cfg.Logger.With("session", del.SessionID, "webhook_id", del.ID, "seq", del.Seq, "host", hostOf(del.URL))
	keys, err := d.secrets.SigningKeys(ctx)
	if err != nil {
		if ctx.Err() == nil {
			log.Error("webhooks: signing secret unavailable", "err", err)
			pause(ctx)
		}
		return false
	}
	now := d.cfg.Clock.Now()
	status, retryAfter, sendErr := d.send(ctx, del, keys, now)
	if sendErr != nil && ctx.Err() != nil {
		return false // shutting down: not the receiver's failure; sent again later
	}
	a := outcome(del, now, status, retryAfter, sendErr, d.cfg.Backoff)
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), recordTimeout)
	defer cancel()
	if err := d.cfg.Outbox.RecordDeliveryAttempt(rctx, a); err != nil {
		log.Error("webhooks: recording an attempt", "err", err)
		pause(ctx)
		return false
	}
	switch a.State {
	case core.DeliveryDelivered:
		log.Debug("webhook delivered", "status", status)
	case core.DeliveryPending:
		log.Warn("webhook attempt failed; will retry", "attempt", del.Attempts+1, "error", a.Error, "next", a.NextAttemptAt)
	case core.DeliveryFailed:
		log.Error("webhook delivery given up", "attempts", del.Attempts+1, "error", a.Error)
	case core.DeliveryStopped:
		log.Warn("webhook receiver answered 410 Gone; no more deliveries to it for this session")
	}
	return true
}

// send makes one signed POST. The answer's body is read up to bodyLimit and
// dropped: it is never stored, logged or shown.
func (d *Deliverer) send(ctx context.Context, del core.Delivery, keys [][]byte, now time.Time) (status int, retryAfter string, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, del.URL, bytes.NewReader(del.Payload))
	if err != nil {
		return 0, "", errors.New("the webhook URL cannot be used")
	}
	ts := now.Unix()
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "flapjack-webhooks/1")
	req.Header.Set(HeaderID, del.ID)
	req.Header.Set(HeaderTimestamp, strconv.FormatInt(ts, 10))
	req.Header.Set(HeaderSignature, SignatureHeader(keys, del.ID, ts, del.Payload))
	resp, err := d.client.Do(req)
	if err != nil {
		return 0, "", err
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, bodyLimit))
	resp.Body.Close()
	return resp.StatusCode, resp.Header.Get("Retry-After"), nil
}

// outcome decides what an attempt makes of its delivery and the events that
// log it: one per attempt, and one more when it is given up.
func outcome(del core.Delivery, now time.Time, status int, retryAfter string, sendErr error, backoff func(int) (time.Duration, bool)) core.DeliveryAttempt {
	n := del.Attempts + 1
	a := core.DeliveryAttempt{ID: del.ID, SessionID: del.SessionID, URL: del.URL, At: now, HTTPStatus: status}
	ev := map[string]any{"webhook_id": del.ID, "seq": del.Seq, "attempt": n}
	if sendErr != nil {
		a.Error = errorText(sendErr)
		ev["error"] = a.Error
	} else {
		ev["http_status"] = status
	}
	var giveUp map[string]any
	switch {
	case sendErr == nil && status >= 200 && status < 300:
		a.State = core.DeliveryDelivered
		ev["outcome"] = "delivered"
	case sendErr == nil && status == http.StatusGone:
		a.State = core.DeliveryStopped
		a.Error = "HTTP 410 Gone"
		ev["outcome"] = "stopped"
		ev["reason"] = "the receiver answered 410 Gone: nothing more is sent to this URL for this session"
	default:
		if sendErr == nil {
			a.Error = fmt.Sprintf("HTTP %d", status)
			if status >= 300 && status < 400 {
				a.Error += " (redirects are not followed; update the webhook URL)"
			}
		}
		delay, ok := backoff(n)
		if !ok {
			a.State = core.DeliveryFailed
			ev["outcome"] = "failed"
			giveUp = map[string]any{"webhook_id": del.ID, "seq": del.Seq, "outcome": "gave_up", "attempts": n,
				"reason": fmt.Sprintf("no attempt succeeded; the last failed with %s", a.Error)}
			break
		}
		delay = max(delay, parseRetryAfter(retryAfter, now))
		a.State = core.DeliveryPending
		a.NextAttemptAt = now.Add(delay)
		ev["outcome"] = "retrying"
		ev["next_attempt_at"] = a.NextAttemptAt
	}
	if a.NextAttemptAt.IsZero() {
		a.NextAttemptAt = now
	}
	a.Events = []core.EventInput{{Type: core.EventWebhook, Payload: mustJSON(ev), CreatedAt: now}}
	if giveUp != nil {
		a.Events = append(a.Events, core.EventInput{Type: core.EventWebhook, Payload: mustJSON(giveUp), CreatedAt: now})
	}
	return a
}

// parseRetryAfter reads Retry-After (seconds or an HTTP date); 0 when absent
// or unreadable, at most maxRetryAfter.
func parseRetryAfter(v string, now time.Time) time.Duration {
	if v == "" {
		return 0
	}
	var d time.Duration
	if n, err := strconv.ParseInt(v, 10, 64); err == nil {
		if n <= 0 {
			return 0
		}
		if n > int64(maxRetryAfter/time.Second) {
			return maxRetryAfter
		}
		d = time.Duration(n) * time.Second
	} else if t, err := http.ParseTime(v); err == nil {
		d = t.Sub(now)
	}
	return min(max(d, 0), maxRetryAfter)
}

// errorText describes a failed request without its URL (which may carry a
// token in its path or query).
func errorText(err error) string {
	var ue *url.Error
	if errors.As(err, &ue) {
		if ue.Timeout() {
			return "timed out"
		}
		err = ue.Err
	}
	return err.Error()
}

func hostOf(raw string) string {
	if u, err := url.Parse(raw); err == nil {
		return u.Host
	}
	return ""
}

func pause(ctx context.Context) {
	t := time.NewTimer(errorPause)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// mustJSON marshals maps of plain values, which cannot fail.
func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}
