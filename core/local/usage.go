package local

import (
	"encoding/json"

	"github.com/flapjack-dev/flapjack/core"
)

// reportedUsage reads what an agent's result says about tokens, cost and
// duration: Claude Code's total_cost_usd and usage, codex's turn usage, an
// ACP prompt's usage (camelCase). Nil when it says nothing.
func reportedUsage(res *resultPayload) *core.Usage {
	if res == nil {
		return nil
	}
	u := &core.Usage{CostUSD: res.CostUSD}
	if res.DurationMS > 0 {
		d := res.DurationMS
		u.DurationMS = &d
	}
	var tokens struct {
		Input      *int64 `json:"input_tokens"`
		Output     *int64 `json:"output_tokens"`
		InputACP   *int64 `json:"inputTokens"`
		OutputACP  *int64 `json:"outputTokens"`
		CacheRead  *int64 `json:"cache_read_input_tokens"`
		CacheWrite *int64 `json:"cache_creation_input_tokens"`
	}
	if len(res.Usage) > 0 && json.Unmarshal(res.Usage, &tokens) == nil {
		u.InputTokens, u.OutputTokens = tokens.Input, tokens.Output
		if u.InputTokens == nil {
			u.InputTokens = tokens.InputACP
		}
		if u.OutputTokens == nil {
			u.OutputTokens = tokens.OutputACP
		}
		// Claude counts cached input apart; it is input all the same.
		if u.InputTokens != nil && (tokens.CacheRead != nil || tokens.CacheWrite != nil) {
			n := *u.InputTokens
			for _, c := range []*int64{tokens.CacheRead, tokens.CacheWrite} {
				if c != nil {
					n += *c
				}
			}
			u.InputTokens = &n
		}
	}
	if u.Empty() {
		return nil
	}
	return u
}
