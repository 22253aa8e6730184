package baremetal

import (
	"fmt"
	"time"

	"github.com/corral-cloud/corral/api/store"
	"github.com/corral-cloud/corral/api/types"
)

// Provision applies an operator's provisioning request to a node row, or
// says why the node's state does not allow it (a *store.NodeStateError).
// It returns the reason recorded with the transition. The conductor does
// the work; this only moves the state and target.
//
//	manage       enroll, manageable, available, error (no server), maintenance → verifying
//	provide      manageable → (target available); available → no change
//	inspect      manageable, available → inspecting (then back to manageable)
//	maintenance  enroll, manageable, available, error (no server) → maintenance
//	clean        manageable, available (no server) → cleaning (then back);
//	             quick wipes disk metadata only, else the whole disk
func Provision(r *store.NodeRow, target string, quick bool) (string, error) {
	idle := []string{types.NodeEnroll, types.NodeManageable, types.NodeAvailable, types.NodeError, types.NodeMaintenance}
	switch target {
	case types.TargetManage:
		if err := requireIdle(r, idle...); err != nil {
			return "", err
		}
		r.State, r.Target, r.Step, r.LastError = types.NodeVerifying, types.NodeManageable, "", ""
		return "manage requested: verifying the BMC credentials", nil
	case types.TargetProvide:
		if r.State == types.NodeAvailable {
			return "", nil
		}
		if err := store.RequireState(r, types.NodeManageable); err != nil {
			return "", err
		}
		r.Target = types.NodeAvailable
		return "", nil
	case types.TargetInspect:
		if err := requireIdle(r, types.NodeManageable, types.NodeAvailable); err != nil {
			return "", err
		}
		r.State, r.Target, r.Step, r.Attempt, r.LastError = types.NodeInspecting, types.NodeManageable, "", 0, ""
		r.SetDeadline(time.Time{})
		return "inspection requested", nil
	case types.TargetMaintenance:
		if err := requireIdle(r, types.NodeEnroll, types.NodeManageable, types.NodeAvailable, types.NodeError); err != nil {
			return "", err
		}
		r.State, r.Target, r.Step = types.NodeMaintenance, "", ""
		return "maintenance requested", nil
	case types.TargetClean:
		if err := requireIdle(r, types.NodeManageable, types.NodeAvailable); err != nil {
			return "", err
		}
		r.CleanMode = types.CleanFull
		if quick {
			r.CleanMode = types.CleanQuick
		}
		r.Target = r.State
		r.State, r.Step, r.Attempt, r.LastError = types.NodeCleaning, "", 0, ""
		r.SetDeadline(time.Time{})
		r.ClearAgentCredentials()
		return "cleaning requested (" + r.CleanMode + ")", nil
	}
	return "", fmt.Errorf("unknown provisioning target %q", target)
}

// requireIdle requires one of states and no server on the node.
func requireIdle(r *store.NodeRow, states ...string) error {
	if err := store.RequireState(r, states...); err != nil {
		return err
	}
	if r.ServerID != "" {
		return &store.NodeStateError{NodeID: r.ID, State: r.State + " with server " + r.ServerID, Want: []string{"a node without a server"}}
	}
	return nil
}
