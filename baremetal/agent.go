package baremetal

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"

	"github.com/corral-cloud/corral/api/store"
	"github.com/corral-cloud/corral/api/types"
)

// ErrBadToken means a deploy agent's token is not the node's current one:
// it was never issued, or a newer attempt replaced it (the agent of an
// interrupted attempt must not report over the current one).
var ErrBadToken = errors.New("deploy token is not the node's current one")

// AgentMode returns the deploy-agent mode of a node state, or "" if the
// ramdisk has nothing to do in it.
func AgentMode(state string) string {
	switch state {
	case types.NodeInspecting:
		return types.AgentInspect
	case types.NodeDeploying:
		return types.AgentDeploy
	case types.NodeCleaning:
		return types.AgentClean
	}
	return ""
}

// CheckAgentToken returns the node if token is its current deploy token
// and the node is in a ramdisk step; else ErrBadToken.
func CheckAgentToken(r store.NodeRow, keys *Keyring, token string) error {
	if r.AgentToken == "" || token == "" || AgentMode(r.State) == "" {
		return ErrBadToken
	}
	want, err := keys.Open(r.AgentToken)
	if err != nil || subtle.ConstantTimeCompare([]byte(want), []byte(token)) != 1 {
		return ErrBadToken
	}
	return nil
}

// ApplyAgentReport records what a deploy agent reports for a node: the
// hardware it found (any report), and at the end its result. Success moves
// the node's step to StepAgentDone for the conductor to finish; failure
// puts the node, and its server, in error with the agent's reason. The
// token must be the node's current one.
func ApplyAgentReport(ctx context.Context, st NodeStore, keys *Keyring, nodeID, token string, rep types.AgentReport) (store.NodeRow, error) {
	check := func(r *store.NodeRow) error {
		if err := CheckAgentToken(*r, keys, token); err != nil {
			return err
		}
		if rep.Mode != AgentMode(r.State) {
			return fmt.Errorf("agent reports %s, node %s is %s: %w", rep.Mode, r.ID, r.State, ErrBadToken)
		}
		if r.Step != StepBooting && r.Step != StepWaitAgent {
			return &store.NodeStateError{NodeID: r.ID, State: r.State + "/" + r.Step, Want: []string{r.State + "/" + StepWaitAgent}}
		}
		return nil
	}
	record := func(r *store.NodeRow) {
		if rep.Hardware.Known() {
			r.SetHardware(rep.Hardware)
		}
	}
	if !rep.Done || rep.OK {
		return st.ChangeNode(ctx, nodeID, 0, "agent", func(_ *store.Tx, r *store.NodeRow) (string, error) {
			if err := check(r); err != nil {
				return "", err
			}
			record(r)
			if rep.Done {
				r.Step = StepAgentDone
			}
			return "", nil
		})
	}
	reason := fmt.Sprintf("%s failed in the deploy agent: %s", rep.Mode, rep.Error)
	return st.UpdateNodeServer(ctx, nodeID, "agent", func(_ *store.Tx, r *store.NodeRow) (string, error) {
		if err := check(r); err != nil {
			return "", err
		}
		record(r)
		r.State, r.Step, r.LastError, r.AgentToken, r.Target = types.NodeError, "", reason, "", ""
		return reason, nil
	}, store.MarkServerError(reason))
}
