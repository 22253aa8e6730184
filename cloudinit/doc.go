// Package cloudinit renders what a guest reads at first boot the way
// cloud-init expects it: the files of a NoCloud seed (meta-data, user-data,
// network-config version 2) or of an OpenStack config drive
// (openstack/latest/meta_data.json, user_data, network_data.json), from a
// guest's name, SSH keys, user data and NICs.
//
// It is pure (no disk, no clock, no ISO): corral-agent writes the files to
// an ISO9660 image labelled "cidata" or "config-2" and attaches it to a VM
// as a read-only CD-ROM; a bare-metal deploy agent can write the same files
// to a partition. meta-data and network-config are written as JSON, which
// is YAML too, so no YAML encoder is needed and the output is stable.
package cloudinit
