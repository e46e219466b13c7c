import json, os
from homeassistant.helpers.json import json_bytes
from homeassistant.components.influxdb import _generate_event_to_json, INFLUX_SCHEMA
from influxdb.line_protocol import make_lines

OUT = os.environ.get("GOLDEN_OUT", "/tmp/hagold/golden.jsonl")
CONFIGS = {
    "default": {},
    "domain_dc": {"measurement_attr": "domain__device_class"},
    "entity_id": {"measurement_attr": "entity_id"},
    "default_meas": {"default_measurement": "state"},
    "override": {"override_measurement": "all", "ignore_attributes": ["friendly_name", "icon"]},
}

async def async_setup(hass, config):
    convs = {k: _generate_event_to_json(INFLUX_SCHEMA(v)) for k, v in CONFIGS.items()}
    fh = open(OUT, "w")
    def listener(event):
        rec = {"event": json.loads(json_bytes(event.as_dict()))}
        lines = {}
        for name, conv in convs.items():
            j = conv(event)
            lines[name] = None if j is None else make_lines({"points": [j]})
        rec["lines"] = lines
        fh.write(json.dumps(rec) + "\n")
        fh.flush()
    hass.bus.async_listen("state_changed", listener)
    return True
