package baremetal

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/corral-cloud/corral/api/store"
	"github.com/corral-cloud/corral/api/types"
)

// Deploy credentials. A ramdisk step (inspecting, deploying, cleaning)
// issues one boot token, sealed into the node row and bound to the node's
// state and attempt. The token is put in the node's iPXE script only
// while it is unused and unexpired, and only for a request from the
// address dnsmasq leased to the node's MAC. The deploy agent exchanges it,
// once, for its work and a session token (ClaimWork); from then on the
// boot token is spent (a replay is refused) and the session token works
// from the agent's address only, until the step's deadline or its end.
//
// The provisioning HTTP server answers ErrTokenExpired with 401 and the
// other errors with 403, and logs every refusal with the node.
var (
	// ErrBadToken means a token is not the node's current one: never
	// issued, forged, or replaced by a newer attempt (the agent of an
	// interrupted attempt must not report over the current one).
	ErrBadToken = errors.New("deploy token is not the node's current one")
	// ErrTokenUsed means a boot token was exchanged already: a replay.
	ErrTokenUsed = errors.New("deploy token was used already (replay)")
	// ErrTokenExpired means the token outlived its time to live (boot
	// token) or its step's deadline (session token).
	ErrTokenExpired = errors.New("deploy token expired")
	// ErrWrongSource means the request does not come from the address
	// dnsmasq leased to the node (boot token) or from the address that
	// exchanged the boot token (session token).
	ErrWrongSource = errors.New("request does not come from the node's DHCP lease")
	// ErrNotProvisioning means the node is not in a ramdisk step: no
	// credential exists for it.
	ErrNotProvisioning = errors.New("node is not being provisioned")
)

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

// SealToken seals a deploy token bound to a node's state and attempt: it
// opens (OpenToken) only while the node is in that state and attempt.
func SealToken(keys *Keyring, state string, attempt int, token string) (string, error) {
	return keys.Seal(state + "/" + strconv.Itoa(attempt) + "/" + token)
}

// OpenToken opens a token sealed by SealToken for the node's current
// state and attempt; else ErrBadToken.
func OpenToken(r store.NodeRow, keys *Keyring, sealed string) (string, error) {
	if sealed == "" {
		return "", ErrBadToken
	}
	plain, err := keys.Open(sealed)
	if err != nil {
		return "", ErrBadToken
	}
	token, ok := strings.CutPrefix(plain, r.State+"/"+strconv.Itoa(r.Attempt)+"/")
	if !ok || token == "" {
		return "", ErrBadToken
	}
	return token, nil
}

// inRamdiskStep reports whether the deploy agent may act for the node.
func inRamdiskStep(r store.NodeRow) bool {
	return AgentMode(r.State) != "" && (r.Step == StepBooting || r.Step == StepWaitAgent)
}

// checkBootToken checks the node's boot token: current, unused,
// unexpired, and asked for from the node's leased address. token "" skips
// the comparison (the iPXE script is being made).
func checkBootToken(r store.NodeRow, keys *Keyring, token, src, leased string, now time.Time) (string, error) {
	if !inRamdiskStep(r) || r.AgentToken == "" {
		return "", ErrNotProvisioning
	}
	want, err := OpenToken(r, keys, r.AgentToken)
	if err != nil {
		return "", err
	}
	if token != "" && subtle.ConstantTimeCompare([]byte(want), []byte(token)) != 1 {
		return "", ErrBadToken
	}
	if r.AgentTokenUsedAt != 0 {
		return "", ErrTokenUsed
	}
	if r.AgentTokenExpires != 0 && now.UnixMicro() >= r.AgentTokenExpires {
		return "", ErrTokenExpired
	}
	if leased == "" || src != leased {
		return "", fmt.Errorf("%w: from %s, leased %q", ErrWrongSource, src, leased)
	}
	return want, nil
}

// BootToken returns the boot token that goes into a node's iPXE script,
// or why the script carries none: ErrNotProvisioning, or a refusal
// (used, expired, wrong source). src is the iPXE request's source address,
// leased the address dnsmasq leased to the node's MAC ("" if none).
func BootToken(r store.NodeRow, keys *Keyring, src, leased string, now time.Time) (string, error) {
	return checkBootToken(r, keys, "", src, leased, now)
}

// LeaseFunc returns the address dnsmasq leased to a MAC, or "".
type LeaseFunc func(mac string) string

// ClaimWork exchanges a node's boot token, once, for the agent's work and
// a session token, valid from src until the step's deadline. The boot
// token must be current, unused and unexpired, and src the address
// leased to the node's first MAC.
func ClaimWork(ctx context.Context, st NodeStore, keys *Keyring, nodeID, token, src string, lease LeaseFunc) (types.AgentWork, error) {
	var work types.AgentWork
	if token == "" {
		return work, ErrBadToken
	}
	session := randomHex(24)
	_, err := st.ChangeNode(ctx, nodeID, 0, "agent", func(_ *store.Tx, r *store.NodeRow) (string, error) {
		leased := ""
		if macs := r.MACList(); len(macs) > 0 && lease != nil {
			leased = lease(macs[0])
		}
		now := time.Now()
		if _, err := checkBootToken(*r, keys, token, src, leased, now); err != nil {
			if errors.Is(err, ErrNotProvisioning) {
				return "", fmt.Errorf("node %s is %s: %w", r.ID, r.State, ErrBadToken)
			}
			return "", err
		}
		sealed, err := SealToken(keys, r.State, r.Attempt, session)
		if err != nil {
			return "", err
		}
		r.AgentTokenUsedAt, r.AgentSession, r.AgentIP = now.UnixMicro(), sealed, src
		work = types.AgentWork{Token: session, Mode: AgentMode(r.State), Expires: r.DeadlineTime()}
		if r.State == types.NodeCleaning {
			work.Clean = r.CleanMode
			if work.Clean == "" {
				work.Clean = types.CleanFull
			}
		}
		return "", nil
	})
	return work, err
}

// CheckAgentSession checks a deploy agent's session token: the node's
// current one, in a ramdisk step, before the step's deadline, from the
// address that claimed the work.
func CheckAgentSession(r store.NodeRow, keys *Keyring, session, src string, now time.Time) error {
	if !inRamdiskStep(r) || r.AgentSession == "" || session == "" {
		return ErrBadToken
	}
	want, err := OpenToken(r, keys, r.AgentSession)
	if err != nil || subtle.ConstantTimeCompare([]byte(want), []byte(session)) != 1 {
		return ErrBadToken
	}
	if dl := r.DeadlineTime(); !dl.IsZero() && now.After(dl) {
		return ErrTokenExpired
	}
	if src != r.AgentIP {
		return fmt.Errorf("%w: from %s, the agent claimed from %s", ErrWrongSource, src, r.AgentIP)
	}
	return nil
}

// ApplyAgentReport records what a deploy agent reports for a node: the
// hardware it found (any report), and at the end its result. Success moves
// the node's step to StepAgentDone for the conductor to finish; failure
// puts the node, and its server, in error with the agent's reason. Either
// way the final report ends the agent's credentials. The session token
// must be the node's current one, used from src.
func ApplyAgentReport(ctx context.Context, st NodeStore, keys *Keyring, nodeID, session, src string, rep types.AgentReport) (store.NodeRow, error) {
	check := func(r *store.NodeRow) error {
		if err := CheckAgentSession(*r, keys, session, src, time.Now()); err != nil {
			return err
		}
		if rep.Mode != AgentMode(r.State) {
			return fmt.Errorf("agent reports %s, node %s is %s: %w", rep.Mode, r.ID, r.State, ErrBadToken)
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
				r.ClearAgentCredentials()
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
		r.State, r.Step, r.LastError, r.Target = types.NodeError, "", reason, ""
		r.ClearAgentCredentials()
		return reason, nil
	}, store.MarkServerError(reason))
}
