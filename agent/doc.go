// Package agent is corral-agent's host loop: it measures the host it runs
// on, registers it with corrald and keeps it alive with heartbeats that
// carry the measured usage.
//
// The loop (see README.md for a diagram) registers once, saves the host ID
// and the host-scoped agent token in a state file (mode 0600) so that a
// restarted agent resumes without registering again, and then heartbeats
// every interval. It never exits because corrald is down: network errors
// and 5xx answers are retried with capped exponential backoff and jitter, a
// rejected credential (401) leads to a new registration, and refusals that
// an operator must fix (400, 403) are logged with corrald's message and
// retried.
//
// HostProbe reads /proc, /sys and /dev through an fs.FS, so every probe runs
// in tests over a fake tree. It reports the capability "kvm_device" when
// /dev/kvm exists, never "kvm": only a guest booted with KVM proves that
// KVM works, and the compute driver will add that probe.
//
// The compute and network drivers slot in later through small interfaces
// declared here (GuestCounter already; guest watching and reconciling
// next), so the agent depends on no driver package.
package agent
