package restshim

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"
)

// apiDoc is the OpenAPI document loaded and checked, with a router for it.
type apiDoc struct {
	doc    *openapi3.T
	router routers.Router
}

// registerTextBodies registers textBody once: kin-openapi keeps its
// decoders in a map of its own, which parallel tests must not write at once.
var registerTextBodies sync.Once

// textBody decodes the dashboard's files (HTML, script, style) as the
// strings the document says they are.
func textBody(r io.Reader, _ http.Header, _ *openapi3.SchemaRef, _ openapi3filter.EncodingFn) (any, error) {
	b, err := io.ReadAll(r)
	return string(b), err
}

func loadDoc(t testing.TB) *apiDoc {
	t.Helper()
	registerTextBodies.Do(func() {
		for _, ct := range []string{"text/html", "text/javascript", "text/css"} {
			openapi3filter.RegisterBodyDecoder(ct, textBody)
		}
	})
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromData(OpenAPI())
	if err != nil {
		t.Fatalf("loading openapi.json: %v", err)
	}
	if err := doc.Validate(context.Background()); err != nil {
		t.Fatalf("openapi.json is not a valid OpenAPI document: %v", err)
	}
	if !doc.IsOpenAPI31OrLater() {
		t.Fatalf("openapi.json is OpenAPI %s, want 3.1", doc.OpenAPI)
	}
	router, err := gorillamux.NewRouter(doc)
	if err != nil {
		t.Fatal(err)
	}
	return &apiDoc{doc: doc, router: router}
}

// checkResponse validates one response against the document: its status
// must be documented for the operation and its body must match the schema.
// A response to a path or method the document does not have (404, 405, or
// 401 before routing) must still be the API's error body.
func (d *apiDoc) checkResponse(req *http.Request, status int, header http.Header, body []byte) error {
	if req.Method == http.MethodHead {
		return nil
	}
	route, params, err := d.router.FindRoute(req)
	if err != nil {
		if status != http.StatusNotFound && status != http.StatusMethodNotAllowed && status != http.StatusUnauthorized {
			return fmt.Errorf("status %d for a route the document does not have", status)
		}
		return d.checkSchema("Error", body)
	}
	if strings.HasPrefix(header.Get("Content-Type"), "text/event-stream") {
		return d.checkStream(route, status, header, body)
	}
	in := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route},
		Status:                 status,
		Header:                 header,
		Options:                &openapi3filter.Options{IncludeResponseStatus: true, MultiError: true},
	}
	in.SetBodyBytes(body)
	return openapi3filter.ValidateResponse(context.Background(), in)
}

// checkStream validates an SSE answer: the status and content type are
// documented, and every event's data is an Event.
func (d *apiDoc) checkStream(route *routers.Route, status int, header http.Header, body []byte) error {
	resp := route.Operation.Responses.Status(status)
	if resp == nil || resp.Value.Content.Get("text/event-stream") == nil {
		return fmt.Errorf("status %d with text/event-stream is not documented", status)
	}
	for _, ev := range parseSSE(body) {
		if ev.data == "" {
			continue
		}
		if err := d.checkSchema("Event", []byte(ev.data)); err != nil {
			return fmt.Errorf("event %s: %w", ev.id, err)
		}
	}
	return nil
}

func (d *apiDoc) checkSchema(name string, body []byte) error {
	s := d.doc.Components.Schemas[name]
	var v any
	if err := json.Unmarshal(body, &v); err != nil {
		return fmt.Errorf("body is not JSON: %v: %q", err, body)
	}
	return s.Value.VisitJSON(v, openapi3.EnableJSONSchema2020())
}

// sseEvent is one parsed Server-Sent Event, or a comment.
type sseEvent struct {
	id, event, data, comment string
	at                       time.Time // when the reader had it whole
}

func parseSSE(b []byte) []sseEvent {
	var out []sseEvent
	var cur sseEvent
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(nil, 8<<20)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "":
			out = append(out, cur)
			cur = sseEvent{}
		case strings.HasPrefix(line, ":"):
			cur.comment = strings.TrimSpace(line[1:])
		default:
			k, v, _ := strings.Cut(line, ":")
			v = strings.TrimPrefix(v, " ")
			switch k {
			case "id":
				cur.id = v
			case "event":
				cur.event = v
			case "data":
				if cur.data != "" {
					cur.data += "\n"
				}
				cur.data += v
			}
		}
	}
	return out
}

// validating wraps the API so that every response any test receives from it
// is checked against the OpenAPI document: the check sits in the server, so a
// new test cannot bypass it, whatever client it uses.
func validating(t testing.TB, d *apiDoc, next http.Handler, counter *validated) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := &teeWriter{ResponseWriter: w}
		next.ServeHTTP(rec, r)
		status := rec.status
		if status == 0 {
			status = http.StatusOK
		}
		if err := d.checkResponse(r, status, w.Header(), rec.body.Bytes()); err != nil {
			t.Errorf("response to %s %s (status %d) does not match openapi.json: %v\nbody: %.2000s", r.Method, r.URL, status, err, rec.body.Bytes())
		}
		counter.add(r.Method + " " + r.URL.Path)
	})
}

// validated counts the responses that were checked.
type validated struct {
	mu sync.Mutex
	n  int
}

func (v *validated) add(string) {
	v.mu.Lock()
	v.n++
	v.mu.Unlock()
}

func (v *validated) count() int {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.n
}

// teeWriter keeps a copy of the response while passing it on, flushes
// included, so streams still stream.
type teeWriter struct {
	http.ResponseWriter
	status int
	body   bytes.Buffer
}

func (w *teeWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *teeWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	w.body.Write(b)
	return w.ResponseWriter.Write(b)
}

func (w *teeWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// TestOpenAPIDocumentIsValidAndServed: the embedded document is valid
// OpenAPI 3.1 and /openapi.json serves it byte for byte, without a token.
func TestOpenAPIDocumentIsValidAndServed(t *testing.T) {
	loadDoc(t)
	e := newEnv(t)
	r := e.do("GET", "/openapi.json", "", nil)
	if r.status != 200 || !bytes.Equal(r.body, OpenAPI()) {
		t.Fatalf("GET /openapi.json = %d, %d bytes; want 200 and the embedded document", r.status, len(r.body))
	}
}

// TestRoutesMatchOpenAPI: the document lists exactly the routes the Handler
// serves, with the same operation ids, so neither can drift from the other.
func TestRoutesMatchOpenAPI(t *testing.T) {
	d := loadDoc(t)
	var doc, served []string
	for path, item := range d.doc.Paths.Map() {
		for method, op := range item.Operations() {
			doc = append(doc, method+" "+path+" "+op.OperationID)
			public := op.Security != nil && len(*op.Security) == 0
			if !public && (op.Responses.Status(401) == nil) {
				t.Errorf("%s %s: no 401 response documented", method, path)
			}
		}
	}
	e := newEnv(t)
	for _, rt := range e.h.Routes() {
		served = append(served, rt.Method+" "+rt.Path+" "+rt.OperationID)
	}
	slices.Sort(doc)
	slices.Sort(served)
	if !slices.Equal(doc, served) {
		t.Errorf("routes differ:\ndocument: %v\nserved:   %v", doc, served)
	}
	if n := len(served); n != 21 {
		t.Errorf("%d routes, want the 13 of the spec, the event stream, /healthz, /openapi.json and the dashboard's 5", n)
	}
}

// TestValidatorCatchesDrift: the validation the other tests rely on does
// reject a response that breaks the document, so it is not a silent no-op.
func TestValidatorCatchesDrift(t *testing.T) {
	d := loadDoc(t)
	req, _ := http.NewRequest("GET", "http://x/api/code-agents/ca-1", nil)
	hdr := http.Header{"Content-Type": {"application/json"}}
	cases := map[string]struct {
		status int
		body   string
	}{
		"unknown field":         {200, `{"id":"ca-1","surprise":1}`},
		"undocumented status":   {418, `{"error":{"code":"INTERNAL","message":"x"}}`},
		"error with wrong code": {404, `{"error":{"code":"NOPE","message":"x"}}`},
	}
	for name, c := range cases {
		if err := d.checkResponse(req, c.status, hdr, []byte(c.body)); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if err := d.checkResponse(req, 404, hdr, []byte(`{"error":{"code":"NOT_FOUND","message":"x"}}`)); err != nil {
		t.Errorf("a valid 404 was rejected: %v", err)
	}
	var re *openapi3filter.ResponseError
	err := d.checkResponse(req, 200, hdr, []byte(`[]`))
	if err == nil || !errors.As(err, &re) {
		t.Errorf("an array for an object: %v", err)
	}
	_ = io.Discard
}
