package restshim

import _ "embed" // the OpenAPI document is part of the binary

// openAPIDocument describes every route of the API (OpenAPI 3.1). It is the
// file restshim/openapi.json, kept by hand next to the handlers; the tests
// validate every response they receive against it, and check that it lists
// exactly the routes the Handler serves. A string, so nothing can change it.
//
//go:embed openapi.json
var openAPIDocument string

// OpenAPI returns the OpenAPI 3.1 document served at /openapi.json.
func OpenAPI() []byte { return []byte(openAPIDocument) }
