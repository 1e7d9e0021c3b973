package local

import (
	"errors"
	"strings"
)

// ParseCommand splits an agent command line the way a POSIX shell would split
// words, without any expansion: blanks separate words, single quotes keep
// everything literally, double quotes keep everything but \" \\ \$ \` and
// backslash-newline, and a backslash outside quotes escapes the next character.
// It exists so FLAPJACK_LOCAL_AGENT_COMMAND can hold paths with spaces without
// handing the string to a shell.
func ParseCommand(s string) ([]string, error) {
	var (
		args  []string
		cur   strings.Builder
		inArg bool
	)
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch c {
		case ' ', '\t', '\n', '\r':
			if inArg {
				args = append(args, cur.String())
				cur.Reset()
				inArg = false
			}
		case '\\':
			if i+1 >= len(s) {
				return nil, errors.New("agent command ends with a backslash")
			}
			i++
			if s[i] == '\n' {
				continue // line continuation
			}
			cur.WriteByte(s[i])
			inArg = true
		case '\'':
			end := strings.IndexByte(s[i+1:], '\'')
			if end < 0 {
				return nil, errors.New("agent command has an unterminated single quote")
			}
			cur.WriteString(s[i+1 : i+1+end])
			i += end + 1
			inArg = true
		case '"':
			inArg = true
			i++
			for ; i < len(s) && s[i] != '"'; i++ {
				if s[i] == '\\' && i+1 < len(s) && strings.IndexByte("\"\\$`\n", s[i+1]) >= 0 {
					i++
					if s[i] == '\n' {
						continue
					}
				}
				cur.WriteByte(s[i])
			}
			if i >= len(s) {
				return nil, errors.New("agent command has an unterminated double quote")
			}
		default:
			cur.WriteByte(c)
			inArg = true
		}
	}
	if inArg {
		args = append(args, cur.String())
	}
	if len(args) == 0 {
		return nil, errors.New("agent command is empty")
	}
	return args, nil
}
