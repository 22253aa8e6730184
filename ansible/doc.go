// Package ansible holds no Go code of its own: its tests check the Ansible
// side of Corral against real binaries. They run ansible-inventory with the
// corral inventory plugin (plugins/inventory/corral.py) against a real
// corrald with servers of both kinds, ansible-lint on the roles and
// playbook, and site.yml against localhost with the roles' "background"
// supervisor (no systemd), checking that it leaves a corrald answering
// /readyz and an agent that registered. They need CORRAL_TEST_ANSIBLE (and
// ipmi_sim, libvirt and Open vSwitch for the parts that use them); see
// api/testenv.
package ansible
