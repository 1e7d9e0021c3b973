package core

import "encoding/json"

// ToolPath is the one file a tool call targets, from its arguments' usual
// names (path, file_path, filePath, target_file, notebook_path); "" when it
// names none. tool_call payloads carry it at the top level, with the tool's
// name as "tool", as the spec's example does, so clients written against it
// read them.
func ToolPath(args json.RawMessage) string {
	var a map[string]any
	if len(args) == 0 || json.Unmarshal(args, &a) != nil {
		return ""
	}
	for _, k := range []string{"path", "file_path", "filePath", "target_file", "notebook_path"} {
		if s, ok := a[k].(string); ok && s != "" {
			return s
		}
	}
	return ""
}
