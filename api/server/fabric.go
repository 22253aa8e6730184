package server

import (
	"fmt"
	"net"
	"net/netip"
	"regexp"

	"github.com/corral-cloud/corral/api/types"
	"github.com/labstack/echo/v4"
)

// Provider networks and allowed address pairs (issue 11).

// maxAddressPairs bounds a port's allowed address pairs: each becomes a
// few flows on its host, and a VIP shared by a pair of load balancers
// needs one or two.
const maxAddressPairs = 10

// physnetRE is a physical network's name: it becomes part of OVS
// external_ids keys and of corral-agent's --physnet flag.
var physnetRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$`)

// checkProvider validates the provider side of a network create: a flat
// network needs a physical network and has no segment ID; a VXLAN network
// never has one; a VLAN network may.
func checkProvider(in *types.NetworkCreate) error {
	if in.Physnet != "" && !physnetRE.MatchString(in.Physnet) {
		return types.FieldError("provider_physnet", "%q is not a physical network name (letters, digits, '_', '.', '-'; at most 64)", in.Physnet)
	}
	switch in.SegmentType {
	case types.SegmentFlat:
		if in.Physnet == "" {
			return types.FieldError("provider_physnet", "is required for a flat network")
		}
		if in.SegmentID != 0 {
			return types.FieldError("segment_id", "a flat network has no segment ID (untagged on %s)", in.Physnet)
		}
	case types.SegmentVXLAN:
		if in.Physnet != "" {
			return types.FieldError("provider_physnet", "a vxlan network is an overlay between hosts; only vlan and flat networks have a physical network")
		}
	}
	return nil
}

// checkAddressPairs validates allowed address pairs and returns them in
// canonical form: an IPv4 address stays an address, a CIDR must be
// canonical; a MAC, if given, unicast and lower case. Duplicates and more
// than maxAddressPairs are refused. An admin may give any unicast MAC,
// a member only a locally administered one (see checkMAC).
func checkAddressPairs(c echo.Context, pairs []types.AddressPair) ([]types.AddressPair, error) {
	if len(pairs) > maxAddressPairs {
		return nil, types.FieldError("allowed_address_pairs", "has %d pairs, the limit is %d", len(pairs), maxAddressPairs).
			WithDetail("max", maxAddressPairs)
	}
	out := make([]types.AddressPair, 0, len(pairs))
	seen := map[string]bool{}
	for i, p := range pairs {
		field := fmt.Sprintf("allowed_address_pairs[%d]", i)
		ip := p.IPAddress
		if ip == "" {
			return nil, types.FieldError(field+".ip_address", "is required")
		}
		if a, err := netip.ParseAddr(ip); err == nil {
			if !a.Is4() || a.IsUnspecified() || a.IsMulticast() || a == netip.AddrFrom4([4]byte{255, 255, 255, 255}) {
				return nil, types.FieldError(field+".ip_address", "%q is not a unicast IPv4 address", ip)
			}
			ip = a.String()
		} else {
			pfx, err := parseCIDR(field+".ip_address", ip)
			if err != nil {
				return nil, types.FieldError(field+".ip_address", "%q is neither an IPv4 address nor a CIDR such as 10.0.0.0/24", ip)
			}
			ip = pfx.String()
		}
		mac := ""
		if p.MACAddress != "" {
			m, err := checkMACField(c, field+".mac_address", p.MACAddress)
			if err != nil {
				return nil, err
			}
			mac = m
		}
		key := ip + "|" + mac
		if seen[key] {
			return nil, types.FieldError(field, "%s is given twice", ip)
		}
		seen[key] = true
		out = append(out, types.AddressPair{IPAddress: ip, MACAddress: mac})
	}
	return out, nil
}

// checkMACField is checkMAC for another field.
func checkMACField(c echo.Context, field, v string) (string, error) {
	s, err := unicastMAC(field, v)
	if err != nil {
		return "", err
	}
	mac, _ := net.ParseMAC(s)
	if mac[0]&2 == 0 && principalOf(c).Role != types.RoleAdmin {
		return "", types.FieldError(field, "%s is universally administered (a hardware vendor's, such as a gateway's); "+
			"choose a locally administered MAC such as 02:%s", mac, mac[1:].String())
	}
	return mac.String(), nil
}
