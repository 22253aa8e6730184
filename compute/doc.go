// Package compute runs a host's guests: it turns the control plane's
// desired guests (types.GuestSpec) into libvirt domains, keeps their images
// in a local cache, applies their QoS, and reports what it observes.
//
// The pieces, each behind a small interface so the reconcile logic can be
// unit-tested with fakes:
//
//   - domain.go builds domain XML with libvirtxml (never string templates);
//   - libvirt.go talks to libvirtd (libvirt.org/go/libvirt);
//   - imagecache.go fetches each image once per host, checks its sha256,
//     writes under the idle I/O class, and evicts least recently used
//     images that no guest uses;
//   - qos.go shapes traffic to a guest with tc (netlink) on its tap, and
//     polices traffic from it with an OpenFlow meter on its OVS port;
//   - probe.go decides the domain type (kvm only when a guest really boots
//     under KVM) and finds vhost-net and hugepages;
//   - driver.go reconciles: it adopts the domains libvirt already runs and
//     never restarts or reconfigures a running guest except to carry out a
//     change that was asked for.
package compute
