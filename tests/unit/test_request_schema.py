"""Request bodies' JSON types checked before anything reads them, with encoding/json's message (api/schema.py)."""

from __future__ import annotations

from typing import Any

import pytest

from hypr.api import schema
from hypr.errors import InvalidParameter

CREATE, CONNECT, EXEC = schema.CONTAINER_CREATE, schema.NETWORK_CONNECT, schema.EXEC_CREATE


@pytest.mark.parametrize(
    ("shape", "body", "message"),
    [
        (CREATE, {"Hostname": 5}, "cannot unmarshal number into Go struct field C.Hostname of type string"),
        (CREATE, {"StopTimeout": "x"}, "cannot unmarshal string into Go struct field C.StopTimeout of type int64"),
        (CREATE, {"StopTimeout": 1.5}, "C.StopTimeout of type int64"),
        (CREATE, {"Cmd": [1]}, "C.Cmd of type strslice"),
        (CREATE, {"Labels": {"a": 1}}, "C.Labels of type map[string]string"),
        (CREATE, {"HostConfig": 5}, "cannot unmarshal number into Go struct field C.HostConfig of type struct"),
        (CREATE, {"HostConfig": {"AutoRemove": "false"}}, "C.HostConfig.AutoRemove of type bool"),
        (CREATE, {"HostConfig": {"NetworkMode": 5}}, "C.HostConfig.NetworkMode of type string"),
        (CREATE, {"HostConfig": {"Memory": "1g"}}, "C.HostConfig.Memory of type int64"),
        (CREATE, {"HostConfig": {"PortBindings": []}}, "cannot unmarshal array into Go struct field "
                                                       "C.HostConfig.PortBindings of type map"),
        (CREATE, {"HostConfig": {"PortBindings": {"80/tcp": "x"}}}, "C.HostConfig.PortBindings[80/tcp] of type slice"),
        (CREATE, {"HostConfig": {"PortBindings": {"80/tcp": [{"HostPort": 5}]}}},
         "C.HostConfig.PortBindings[80/tcp].HostPort of type string"),
        (CREATE, {"HostConfig": {"Mounts": [{"ReadOnly": "yes"}]}}, "C.HostConfig.Mounts.ReadOnly of type bool"),
        (CREATE, {"HostConfig": {"RestartPolicy": "always"}}, "C.HostConfig.RestartPolicy of type struct"),
        (CREATE, {"HostConfig": {"ConsoleSize": [1, 2, 3]}}, "C.HostConfig.ConsoleSize of type [2]uint"),
        (CREATE, {"NetworkingConfig": {"EndpointsConfig": {"n": 5}}}, "C.NetworkingConfig.EndpointsConfig[n]"),
        (CREATE, {"NetworkingConfig": {"EndpointsConfig": {"n": {"Aliases": "abc"}}}},
         "C.NetworkingConfig.EndpointsConfig[n].Aliases of type []string"),
        (CONNECT, {"EndpointConfig": [1]}, "cannot unmarshal array into Go struct field C.EndpointConfig of type struct"),
        (CONNECT, {"EndpointConfig": {"Links": "x"}}, "C.EndpointConfig.Links of type []string"),
        (CONNECT, {"EndpointConfig": {"IPAMConfig": {"IPv4Address": 5}}}, "C.EndpointConfig.IPAMConfig.IPv4Address"),
        (schema.NETWORK_DISCONNECT, {"Force": "yes"}, "C.Force of type bool"),
        (schema.NETWORK_CREATE, {"IPAM": {"Config": [{"Subnet": 5}]}}, "C.IPAM.Config.Subnet of type string"),
        (schema.NETWORK_CREATE, {"Internal": "yes"}, "C.Internal of type bool"),
        (schema.NETWORK_CREATE, {"Options": {"mtu": 1500}}, "C.Options of type map[string]string"),
        (EXEC, {"Cmd": "id"}, "cannot unmarshal string into Go struct field C.Cmd of type []string"),
        (EXEC, {"Env": [1, 2]}, "C.Env of type []string"),
        (schema.EXEC_START, {"Detach": "x"}, "C.Detach of type bool"),
        (schema.CONTAINER_UPDATE, {"Memory": "x"}, "C.Memory of type int64"),
    ],
)  # fmt: skip
def test_a_field_of_the_wrong_json_type_is_a_400_naming_it(shape: schema.Schema, body: Any, message: str) -> None:
    with pytest.raises(InvalidParameter) as caught:
        schema.check(body, shape, "C")
    assert message in caught.value.message and caught.value.status == 400


@pytest.mark.parametrize(
    ("shape", "body"),
    [
        (CREATE, {"Cmd": "echo hi", "Entrypoint": ["sh", "-c"], "HostConfig": {"CapAdd": "NET_ADMIN"}}),  # StrSlice
        (CREATE, {"Hostname": None, "HostConfig": None, "Env": None}),  # null is Go's zero value
        (CREATE, {"StopTimeout": 10.0, "HostConfig": {"Memory": 2**40, "ConsoleSize": [24, 80]}}),
        (CREATE, {"Unknown": [1], "HostConfig": {"Unknown": {}}}),  # encoding/json ignores unknown fields
        (CREATE, {"NetworkingConfig": {"EndpointsConfig": {"n": None, "m": {"IPAMConfig": None}}}}),
        (CONNECT, {"Container": "box", "EndpointConfig": {"Aliases": ["a"], "DriverOpts": {"k": "v"}}}),
    ],
)  # fmt: skip
def test_well_typed_bodies_pass(shape: schema.Schema, body: Any) -> None:
    schema.check(body, shape, "C")
