# -*- coding: utf-8 -*-
# Corral dynamic inventory: servers (VMs and bare metal), hosts and nodes
# read from corrald's /v1 API, grouped by where they are and what they are.
# Apache-2.0, as the rest of Corral.

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
name: corral
short_description: Corral servers, hosts and bare-metal nodes as an inventory
description:
  - Reads servers of both kinds (C(vm) and C(baremetal)), hypervisor hosts and
    bare-metal nodes from a Corral control plane (corrald) over its REST API,
    following every page of each list.
  - Groups them by region, rack (zone), hardware aggregate, kind, worker-group
    role, worker-group name and project, and sets host variables prefixed with
    C(corral_) plus C(ansible_host), the first address of a server.
  - Group names are made of letters, digits and underscores only; anything else
    becomes an underscore, so C(dc1-r01) gives the group C(zone_dc1_r01).
  - The configuration file's name must end in C(corral.yml) or C(corral.yaml),
    for example C(inventory.corral.yml).
extends_documentation_fragment:
  - constructed
options:
  plugin:
    description: Marks the file as this plugin's configuration.
    required: true
    choices: ['corral']
  url:
    description: corrald's URL (or the load balancer's), without C(/v1).
    required: true
    type: str
    env:
      - name: CORRAL_ENDPOINT
  token:
    description:
      - An API token. An admin or reader token sees everything; a project token
        sees that project's servers only (hosts and nodes are then left out).
      - Prefer O(token_file) or the environment over writing the token here.
    type: str
    env:
      - name: CORRAL_TOKEN
  token_file:
    description: A file holding the token (read when O(token) is not set).
    type: path
    env:
      - name: CORRAL_TOKEN_FILE
  validate_certs:
    description: Check corrald's TLS certificate.
    type: bool
    default: true
  ca_file:
    description: CA bundle that signed corrald's certificate, instead of the system's.
    type: path
  timeout:
    description: Seconds allowed for each API request.
    type: int
    default: 30
  page_size:
    description: Items asked for per page (1 to 1000).
    type: int
    default: 500
  sources:
    description: What to list. C(hosts) and C(nodes) need an admin or reader token.
    type: list
    elements: str
    choices: ['servers', 'hosts', 'nodes']
    default: ['servers', 'hosts', 'nodes']
  group_prefixes:
    description:
      - Prefix of each kind of group; set one to an empty string to leave that kind
        of group out.
    type: dict
    default:
      region: region_
      zone: zone_
      aggregate: aggregate_
      kind: kind_
      role: role_
      group: group_
      project: project_
      state: ""
"""

EXAMPLES = r"""
# inventory.corral.yml
plugin: corral
url: https://corral.example.net:8440
token_file: ~/.config/corral/token
ca_file: /etc/corral/tls/ca.crt
# More groups from host variables (the constructed options):
keyed_groups:
  - key: corral_flavor
    prefix: flavor
compose:
  ansible_user: "'debian' if corral_kind == 'vm' else 'root'"

# ansible-inventory -i inventory.corral.yml --graph
# ansible -i inventory.corral.yml role_broker -m ping
"""

import json
import os
import re

from ansible.errors import AnsibleError, AnsibleParserError
from ansible.module_utils.common.text.converters import to_native, to_text
from ansible.module_utils.six.moves.urllib.error import HTTPError, URLError
from ansible.module_utils.six.moves.urllib.parse import urlencode
from ansible.module_utils.urls import open_url
from ansible.plugins.inventory import BaseInventoryPlugin, Constructable

_UNSAFE = re.compile(r"[^A-Za-z0-9_]")

DEFAULT_PREFIXES = {
    "region": "region_",
    "zone": "zone_",
    "aggregate": "aggregate_",
    "kind": "kind_",
    "role": "role_",
    "group": "group_",
    "project": "project_",
    "state": "",
}


def safe_group(name):
    """Returns name with every character other than a letter, digit or
    underscore replaced by an underscore (a leading digit gets one in front)."""
    out = _UNSAFE.sub("_", to_text(name))
    if out and out[0].isdigit():
        out = "_" + out
    return out


class CorralAPIError(AnsibleError):
    """An answer from corrald that is not a page of items."""


class InventoryModule(BaseInventoryPlugin, Constructable):
    """Builds the inventory from corrald's lists."""

    NAME = "corral"

    def verify_file(self, path):
        if not super(InventoryModule, self).verify_file(path):
            return False
        return path.endswith(("corral.yml", "corral.yaml"))

    # API access -----------------------------------------------------------

    def _token(self):
        token = self.get_option("token")
        if not token:
            path = self.get_option("token_file")
            if not path:
                raise AnsibleParserError(
                    "corral inventory: no token: set token or token_file, or CORRAL_TOKEN or CORRAL_TOKEN_FILE")
            path = os.path.expanduser(path)
            try:
                with open(path) as f:
                    token = f.read()
            except (IOError, OSError) as e:
                raise AnsibleParserError("corral inventory: token_file %s: %s" % (path, to_native(e)))
        token = token.strip()
        if not token:
            raise AnsibleParserError("corral inventory: the token is empty")
        return token

    def _get(self, path, query):
        url = "%s%s?%s" % (self._url, path, urlencode(sorted(query.items())))
        try:
            resp = open_url(url, method="GET", headers={"Authorization": "Bearer " + self._bearer,
                                                        "Accept": "application/json"},
                            validate_certs=self.get_option("validate_certs"), ca_path=self.get_option("ca_file"),
                            timeout=self.get_option("timeout"), follow_redirects="none")
            body = resp.read()
        except HTTPError as e:
            raise CorralAPIError(self._http_error(url, e))
        except URLError as e:
            raise AnsibleError("corral inventory: cannot reach corrald at %s: %s" % (self._url, to_native(e.reason)))
        except (IOError, OSError) as e:  # timeouts, resets, TLS errors
            raise AnsibleError("corral inventory: cannot reach corrald at %s: %s" % (self._url, to_native(e)))
        try:
            return json.loads(to_text(body))
        except ValueError:
            raise AnsibleError("corral inventory: GET %s answered something other than JSON" % url)

    def _http_error(self, url, e):
        msg = ""
        try:
            msg = json.loads(to_text(e.read()))["error"]["message"]
        except Exception:  # pylint: disable=broad-except
            pass
        self._status = e.code
        if e.code == 401:
            return ("corral inventory: corrald refused the token (401 Unauthorized%s); check token, "
                    "token_file or CORRAL_TOKEN" % (": " + msg if msg else ""))
        return "corral inventory: GET %s: %d %s" % (url, e.code, msg or to_native(e.reason))

    def _list(self, path):
        """Every item of a list, page after page (cursor)."""
        items, cursor, pages = [], None, 0
        while True:
            query = {"limit": self.get_option("page_size")}
            if cursor:
                query["cursor"] = cursor
            page = self._get(path, query)
            if not isinstance(page, dict) or not isinstance(page.get("items"), list):
                raise AnsibleError("corral inventory: GET %s%s: not a list page" % (self._url, path))
            items.extend(page["items"])
            cursor = page.get("next_cursor")
            pages += 1
            if not cursor:
                return items
            if pages > 100000:  # a cursor that never ends is corrald's bug; do not loop forever
                raise AnsibleError("corral inventory: GET %s%s: more than 100000 pages" % (self._url, path))

    def _list_optional(self, path):
        """Like _list, but a 403 (a token that may not read this list) leaves it out with a warning."""
        self._status = 0
        try:
            return self._list(path)
        except CorralAPIError as e:
            if self._status == 403:
                self.display.warning("corral inventory: %s left out: the token may not read it" % path)
                return []
            raise

    # Inventory ----------------------------------------------------------------

    def _group(self, kind, name, host):
        prefix = self._prefixes.get(kind, "")
        if not prefix or not name:
            return
        group = self.inventory.add_group(safe_group(prefix + to_text(name)))
        self.inventory.add_child(group, host)

    def _add_host(self, name, obj_id):
        """Adds a host under its Corral name; a name already taken by another
        object (servers are named per project) gets the object's ID appended."""
        if name in self._taken and self._taken[name] != obj_id:
            name = "%s_%s" % (name, obj_id)
            self.display.warning("corral inventory: name taken twice; %s listed as %s" % (obj_id, name))
        self._taken[name] = obj_id
        self.inventory.add_host(name)
        return name

    def _finish(self, host, hostvars):
        for k, v in hostvars.items():
            self.inventory.set_variable(host, k, v)
        strict = self.get_option("strict")
        self._set_composite_vars(self.get_option("compose"), hostvars, host, strict=strict)
        self._add_host_to_composed_groups(self.get_option("groups"), hostvars, host, strict=strict)
        self._add_host_to_keyed_groups(self.get_option("keyed_groups"), hostvars, host, strict=strict)

    def _place(self, host, region_id, zone_id, aggregate_ids):
        region = self._names["regions"].get(region_id, region_id)
        zone = self._names["zones"].get(zone_id, zone_id)
        aggregates = [self._names["aggregates"].get(a, a) for a in aggregate_ids if a]
        self._group("region", region, host)
        self._group("zone", zone, host)
        for a in aggregates:
            self._group("aggregate", a, host)
        return region, zone, aggregates

    def _add_server(self, s):
        host = self._add_host(s["name"], s["id"])
        self.inventory.add_child(self.inventory.add_group("corral_servers"), host)
        region, zone, aggregates = self._place(host, s.get("region_id"), s.get("zone_id"), [s.get("aggregate_id")])
        project = self._names["projects"].get(s.get("project_id"), s.get("project_id"))
        grp = self._groups.get(s.get("group_id") or "", {})
        self._group("kind", s.get("kind"), host)
        self._group("project", project, host)
        self._group("state", s.get("state"), host)
        if grp:
            self._group("group", grp.get("name"), host)
            self._group("role", grp.get("role"), host)
        addresses = s.get("addresses") or []
        hostvars = {
            "corral_id": s["id"],
            "corral_name": s["name"],
            "corral_object": "server",
            "corral_kind": s.get("kind"),
            "corral_state": s.get("state"),
            "corral_desired_state": s.get("desired_state"),
            "corral_fault": s.get("fault", ""),
            "corral_project": project,
            "corral_flavor": self._names["flavors"].get(s.get("flavor_id"), s.get("flavor_id")),
            "corral_image": self._names["images"].get(s.get("image_id"), s.get("image_id")),
            "corral_region": region,
            "corral_zone": zone,
            "corral_rack": zone,
            "corral_aggregate": aggregates[0] if aggregates else "",
            "corral_host": self._names["hosts"].get(s.get("host_id"), s.get("host_id", "")),
            "corral_node": self._names["nodes"].get(s.get("node_id"), s.get("node_id", "")),
            "corral_group": grp.get("name", ""),
            "corral_group_role": grp.get("role", ""),
            "corral_addresses": addresses,
            "corral_ips": [a["ip"] for a in addresses if a.get("ip")],
        }
        if hostvars["corral_ips"]:
            hostvars["ansible_host"] = hostvars["corral_ips"][0]
        self._finish(host, hostvars)

    def _add_hypervisor(self, h):
        host = self._add_host(h["name"], h["id"])
        self.inventory.add_child(self.inventory.add_group("corral_hosts"), host)
        region, zone, aggregates = self._place(host, h.get("region_id"), h.get("zone_id"), h.get("aggregate_ids") or [])
        self._group("kind", "host", host)
        self._group("state", h.get("state"), host)
        self._finish(host, {
            "corral_id": h["id"],
            "corral_name": h["name"],
            "corral_object": "host",
            "corral_kind": "host",
            "corral_state": h.get("state"),
            "corral_region": region,
            "corral_zone": zone,
            "corral_rack": zone,
            "corral_aggregates": aggregates,
            "corral_capabilities": h.get("capabilities") or [],
            "corral_inventory": h.get("inventory") or {},
            "corral_allocated": h.get("allocated") or {},
            "corral_last_heartbeat": h.get("last_heartbeat"),
            "corral_agent_version": h.get("agent_version", ""),
        })

    def _add_node(self, n):
        host = self._add_host(n["name"], n["id"])
        self.inventory.add_child(self.inventory.add_group("corral_nodes"), host)
        region, zone, aggregates = self._place(host, n.get("region_id"), n.get("zone_id"), [n.get("aggregate_id")])
        self._group("kind", "node", host)
        self._group("state", n.get("state"), host)
        bmc = n.get("bmc") or {}
        self._finish(host, {
            "corral_id": n["id"],
            "corral_name": n["name"],
            "corral_object": "node",
            "corral_kind": "node",
            "corral_state": n.get("state"),
            "corral_power_state": n.get("power_state"),
            "corral_bmc_fault": n.get("bmc_fault", ""),
            "corral_bmc_address": bmc.get("address", ""),
            "corral_bmc_port": bmc.get("port"),
            "corral_macs": n.get("macs") or [],
            "corral_provision_ip": n.get("provision_ip", ""),
            "corral_hardware": n.get("hardware") or {},
            "corral_server": self._names["servers"].get(n.get("server_id"), n.get("server_id", "")),
            "corral_region": region,
            "corral_zone": zone,
            "corral_rack": zone,
            "corral_aggregate": aggregates[0] if aggregates else "",
        })

    def parse(self, inventory, loader, path, cache=True):
        super(InventoryModule, self).parse(inventory, loader, path, cache)
        self._read_config_data(path)
        self._url = (self.get_option("url") or "").rstrip("/")
        if not self._url.startswith(("http://", "https://")):
            raise AnsibleParserError("corral inventory: url must start with http:// or https://, got %r" % self._url)
        if not 1 <= self.get_option("page_size") <= 1000:
            raise AnsibleParserError("corral inventory: page_size must be from 1 to 1000")
        self._bearer = self._token()
        self._status = 0
        self._prefixes = dict(DEFAULT_PREFIXES)
        self._prefixes.update(self.get_option("group_prefixes") or {})
        self._taken = {}
        sources = self.get_option("sources")

        def names(items):
            return dict((i["id"], i["name"]) for i in items)

        # The catalogue first, so objects are grouped by names rather than IDs.
        # A project token may not read every list: what it cannot read is
        # shown by ID.
        self._names = {}
        for key in ("regions", "zones", "aggregates", "flavors", "projects", "images"):
            self._names[key] = names(self._list_optional("/v1/" + key))
        self._groups = dict((g["id"], g) for g in self._list_optional("/v1/groups"))
        servers = self._list("/v1/servers") if "servers" in sources else []
        hosts = self._list_optional("/v1/hosts") if "hosts" in sources else []
        nodes = self._list_optional("/v1/nodes") if "nodes" in sources else []
        self._names["servers"] = names(servers)
        self._names["hosts"] = names(hosts)
        self._names["nodes"] = names(nodes)
        # Hosts and nodes before servers: machines keep their names when a
        # server happens to be named like one of them.
        for h in hosts:
            self._add_hypervisor(h)
        for n in nodes:
            self._add_node(n)
        for s in servers:
            self._add_server(s)
