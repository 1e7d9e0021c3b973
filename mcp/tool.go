package mcp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/google/jsonschema-go/jsonschema"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/flapjack-dev/flapjack/core"
)

// callKey carries the tool call's request in its handler's context, for the
// handlers that talk back to the client while they work (progress).
type callKey struct{}

// callFrom is the request of the tool call being handled, if any.
func callFrom(ctx context.Context) *mcp.CallToolRequest {
	req, _ := ctx.Value(callKey{}).(*mcp.CallToolRequest)
	return req
}

// toolDef is one tool: its definition (without schemas) and a description for
// every input property.
type toolDef struct {
	tool  *mcp.Tool
	props map[string]string
}

// addTool registers a typed tool. Unlike the SDK's generic AddTool, it
// validates arguments itself, so that schema violations are reported as
// VALIDATION_ERROR like every other validation failure.
//
// With checkOutput, every result is also validated against the output schema:
// the tests turn it on, so a result that breaks the published contract fails
// there; production skips it because it re-parses every result (about a
// millisecond for a page of 100 events).
func addTool[In, Out any](s *mcp.Server, log *slog.Logger, checkOutput bool, d toolDef, fn func(context.Context, In) (Out, error)) {
	t := d.tool
	in := mustSchema[In]()
	tuneInput(t.Name, in, d.props)
	out := mustSchema[Out]()
	tuneOutput(out)
	inRes := mustResolve(t.Name, in)
	// Resolving the output schema is only needed to check results, and costs
	// more than the rest of the tool's set-up at every server start.
	var outRes *jsonschema.Resolved
	if checkOutput {
		outRes = mustResolve(t.Name, out)
	}
	t.InputSchema = in
	t.OutputSchema = out

	s.AddTool(t, func(ctx context.Context, req *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		v, verr := decode[In](req.Params.Arguments, inRes)
		if verr != nil {
			return toolError(verr), nil
		}
		res, err := fn(context.WithValue(ctx, callKey{}, req), v)
		if err != nil {
			if ctx.Err() != nil && (errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)) {
				// The client gave up on the request; there is nobody to answer.
				return nil, err
			}
			e := core.AsError(err)
			if e.Code == core.CodeInternal {
				log.ErrorContext(ctx, "tool failed", "tool", t.Name, "err", errors.Unwrap(e))
			}
			return toolError(e), nil
		}
		b, err := json.Marshal(res)
		if err == nil && checkOutput {
			err = validate(outRes, b)
		}
		if err != nil {
			log.ErrorContext(ctx, "tool output does not match its schema", "tool", t.Name, "err", err)
			return toolError(core.Internal(err)), nil
		}
		return &mcp.CallToolResult{
			Content:           []mcp.Content{&mcp.TextContent{Text: string(b)}},
			StructuredContent: json.RawMessage(b),
		}, nil
	})
}

// toolError is a tool result whose text is "CODE: message".
func toolError(e *core.Error) *mcp.CallToolResult {
	var r mcp.CallToolResult
	r.SetError(e)
	return &r
}

// decode validates raw arguments against the input schema and unmarshals them.
func decode[In any](raw json.RawMessage, schema *jsonschema.Resolved) (In, *core.Error) {
	var v In
	if len(raw) == 0 || string(raw) == "null" {
		raw = json.RawMessage("{}")
	}
	raw = dropNulls(raw, schema.Schema().Required)
	if err := validate(schema, raw); err != nil {
		return v, core.Errorf(core.CodeValidation, "arguments: %s", schemaMessage(err, schema.Schema()))
	}
	if err := json.Unmarshal(raw, &v); err != nil {
		return v, core.Errorf(core.CodeValidation, "arguments: %s", clip(err.Error()))
	}
	return v, nil
}

// schemaMessage says which argument breaks the input schema and what it must
// be, from the schema alone: the validator quotes the value it refused, and a
// value may be a secret (a Cursor key of the wrong type) or huge, and every
// tool error goes to the model.
func schemaMessage(err error, schema *jsonschema.Schema) string {
	msg := strings.TrimPrefix(err.Error(), "validating root: ")
	rest, ok := strings.CutPrefix(msg, "validating /properties/")
	if !ok {
		// required / additionalProperties: these name keys, never values.
		return clip(msg)
	}
	path, detail, _ := strings.Cut(rest, ": ")
	keyword, _, _ := strings.Cut(detail, ":")
	name, _, _ := strings.Cut(path, "/")
	field := strings.ReplaceAll(path, "/properties/", ".")
	prop := schema.Properties[name]
	if prop == nil || field != name {
		return field + ": does not match the tool's input schema (" + keyword + ")"
	}
	switch keyword {
	case "type":
		return field + ": must be " + typeNames(prop)
	case "enum":
		vals := make([]string, 0, len(prop.Enum))
		for _, e := range prop.Enum {
			vals = append(vals, fmt.Sprint(e))
		}
		return field + ": must be one of " + strings.Join(vals, ", ")
	case "minimum", "exclusiveMinimum":
		if prop.Minimum != nil {
			return field + ": must be at least " + strconv.FormatFloat(*prop.Minimum, 'f', -1, 64)
		}
	case "maximum", "exclusiveMaximum":
		if prop.Maximum != nil {
			return field + ": must be at most " + strconv.FormatFloat(*prop.Maximum, 'f', -1, 64)
		}
	case "minLength":
		if prop.MinLength != nil {
			return field + ": must be at least " + strconv.Itoa(*prop.MinLength) + " characters"
		}
	case "maxLength":
		if prop.MaxLength != nil {
			return field + ": must be at most " + strconv.Itoa(*prop.MaxLength) + " characters"
		}
	}
	return field + ": does not match the tool's input schema (" + keyword + ")"
}

// typeNames is "a string", "an integer or null"... for a schema's types.
func typeNames(s *jsonschema.Schema) string {
	types := s.Types
	if s.Type != "" {
		types = []string{s.Type}
	}
	names := make([]string, 0, len(types))
	for _, t := range types {
		switch t {
		case "integer", "object", "array":
			names = append(names, "an "+t)
		case "null":
			names = append(names, "null")
		default:
			names = append(names, "a "+t)
		}
	}
	if len(names) == 0 {
		return "a JSON value"
	}
	return strings.Join(names, " or ")
}

// clip bounds a message that may quote a client's value.
func clip(s string) string {
	const limit = 300
	if len(s) <= limit {
		return s
	}
	return strings.ToValidUTF8(s[:limit], "") + "…"
}

func validate(schema *jsonschema.Resolved, b []byte) error {
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	return schema.Validate(v)
}

// typeSchemas fixes the library's defaults for our types.
func typeSchemas() map[reflect.Type]*jsonschema.Schema {
	var statuses []any
	for _, s := range core.AllStatuses() {
		statuses = append(statuses, string(s))
	}
	return map[reflect.Type]*jsonschema.Schema{
		// Event payloads are any JSON value, not a byte array.
		reflect.TypeFor[json.RawMessage](): {Description: "The event's data, any JSON value; its shape depends on event_type."},
		// model_params / modelParams: an object, or null when unset.
		reflect.TypeFor[map[string]any](): {Types: []string{"null", "object"}},
		reflect.TypeFor[time.Time]():      {Type: "string", Format: "date-time"},
		reflect.TypeFor[core.Status]():    {Type: "string", Enum: statuses},
	}
}

func mustSchema[T any]() *jsonschema.Schema {
	s, err := jsonschema.For[T](&jsonschema.ForOptions{TypeSchemas: typeSchemas()})
	if err != nil {
		panic(err)
	}
	return s
}

func mustResolve(name string, s *jsonschema.Schema) *jsonschema.Resolved {
	r, err := s.Resolve(&jsonschema.ResolveOptions{ValidateDefaults: true})
	if err != nil {
		panic(fmt.Sprintf("tool %s: %v", name, err))
	}
	return r
}

// tuneInput adds descriptions and limits to the input properties. Every
// property must have a description, and every description a property.
func tuneInput(name string, s *jsonschema.Schema, props map[string]string) {
	if s.Type != "object" || s.AdditionalProperties == nil {
		panic(fmt.Sprintf("tool %s: input must be a closed object", name))
	}
	limits := inputLimits()
	for p, ps := range s.Properties {
		desc, ok := props[p]
		if !ok {
			panic(fmt.Sprintf("tool %s: input property %q has no description", name, p))
		}
		ps.Description = desc
		if !slices.Contains(s.Required, p) {
			plainType(ps)
		}
		if l, ok := limits[p]; ok {
			l(ps)
		}
	}
	for p := range props {
		if _, ok := s.Properties[p]; !ok {
			panic(fmt.Sprintf("tool %s: description for unknown input property %q", name, p))
		}
	}
}

// plainType declares an optional property by its one type ("integer", not
// ["null", "integer"]): clients that fill arguments from the schema (the
// MCP Inspector turns --tool-arg since=8 into a number) read "type" as one
// string. null is still accepted, and means omitted: decode drops it before
// validating. A required property that may be null (webhookUrl: null clears
// it) keeps its union, because there null means something.
func plainType(s *jsonschema.Schema) {
	if len(s.Types) == 2 && slices.Contains(s.Types, "null") {
		s.Type = s.Types[0]
		if s.Type == "null" {
			s.Type = s.Types[1]
		}
		s.Types = nil
	}
}

// dropNulls removes the optional top-level properties whose value is null:
// an explicit null on an optional field means omitted, over MCP as over
// REST. Anything but an object is left for the schema to refuse.
func dropNulls(raw json.RawMessage, required []string) json.RawMessage {
	var fields map[string]json.RawMessage
	if json.Unmarshal(raw, &fields) != nil || fields == nil {
		return raw
	}
	dropped := false
	for k, v := range fields {
		if string(v) == "null" && !slices.Contains(required, k) {
			delete(fields, k)
			dropped = true
		}
	}
	if !dropped {
		return raw
	}
	out, err := json.Marshal(fields)
	if err != nil {
		return raw
	}
	return out
}

// inputLimits are schema keywords for input properties, by name; the Service
// checks the same limits. String lengths are left to the Service and stated in
// the descriptions: the schema library quotes the offending value in its
// errors, and a 100,000-character prompt or a key must not be echoed back.
func inputLimits() map[string]func(*jsonschema.Schema) {
	between := func(lo, hi float64) func(*jsonschema.Schema) {
		return func(s *jsonschema.Schema) { s.Minimum, s.Maximum = &lo, &hi }
	}
	var statuses []any
	for _, s := range core.AllStatuses() {
		statuses = append(statuses, string(s))
	}
	return map[string]func(*jsonschema.Schema){
		"prompt":      func(s *jsonschema.Schema) { s.MinLength = jsonschema.Ptr(1) },
		"since":       func(s *jsonschema.Schema) { s.Minimum = jsonschema.Ptr(0.0) },
		"limit":       func(s *jsonschema.Schema) { s.Minimum = jsonschema.Ptr(1.0) }, // above the maximum is served as it
		"waitSeconds": between(0, core.MaxWaitSeconds),
		"status":      func(s *jsonschema.Schema) { s.Enum = statuses },
	}
}

// tuneOutput declares lists as arrays: the Service never returns null lists.
func tuneOutput(s *jsonschema.Schema) {
	if s == nil {
		return
	}
	if slices.Equal(s.Types, []string{"null", "array"}) {
		s.Types, s.Type = nil, "array"
	}
	for _, p := range s.Properties {
		tuneOutput(p)
	}
	tuneOutput(s.Items)
}
