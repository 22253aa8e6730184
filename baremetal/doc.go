// Package baremetal drives bare-metal nodes through their BMCs and the
// provisioning network, behind the same server API as VMs.
//
// The root package holds the intent and small interfaces:
//
//   - BMC and Driver: power and boot device of one node, implemented over
//     IPMI lanplus by baremetal/ipmi (bmclib) and by baremetal/fake in unit
//     tests;
//
//   - Provisioner: what the conductor needs from the provisioning network
//     (DHCP entries, raw images), implemented by baremetal/pxe;
//
//   - Keyring: AES-GCM sealing of BMC passwords and per-deploy agent tokens;
//
//   - Match: which available node a baremetal server gets, with an
//     explanation when none fits;
//
//   - Provision: the operator's provisioning requests as pure state rules;
//
//   - Conductor: the persisted, resumable state machine
//
//     enroll → verifying → manageable → inspecting → available → deploying
//     → active → deleting → cleaning → available, plus maintenance and error
//
//     and the periodic power-state sync.
//
// Every node's state, step, deadline and attempt live in the store, and a
// lease with an expiry says which corrald replica drives it: a replica that
// dies mid-deploy leaves a lease that expires, and the next conductor
// resumes from the persisted step (or fails the node cleanly into error).
// Every transition is recorded in the node's history with its actor and
// reason.
package baremetal
