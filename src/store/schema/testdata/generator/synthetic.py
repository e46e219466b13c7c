import json, sys, datetime as dt
from homeassistant.core import State, Event, Context
from homeassistant.helpers.json import json_bytes
from homeassistant.components.influxdb import _generate_event_to_json, INFLUX_SCHEMA
from influxdb.line_protocol import make_lines

CONFIGS = {
    "default": {},
    "domain_dc": {"measurement_attr": "domain__device_class"},
    "entity_id": {"measurement_attr": "entity_id"},
    "default_meas": {"default_measurement": "state"},
    "override": {"override_measurement": "all", "ignore_attributes": ["friendly_name", "icon"]},
}
convs = {k: _generate_event_to_json(INFLUX_SCHEMA(v)) for k, v in CONFIGS.items()}
base = dt.datetime(2025, 4, 1, 10, 0, 0, 123456, tzinfo=dt.timezone.utc)
EVENTS = [
 ("person.anne", "home", {"editable": True, "id": "anne", "device_trackers": ["device_tracker.anne_phone"], "latitude": 52.37, "longitude": 4.89, "gps_accuracy": 12, "source": "device_tracker.anne_phone", "user_id": "8f7e1c9d2b3a4f5e6d7c8b9a0f1e2d3c", "friendly_name": "Anne"}),
 ("person.bob", "Work", {"editable": True, "id": "bob", "device_trackers": [], "friendly_name": "Bob"}),
 ("zone.home", "2", {"latitude": 52.3731, "longitude": 4.8922, "radius": 100, "passive": False, "persons": ["person.anne", "person.carl"], "editable": True, "icon": "mdi:home", "friendly_name": "Home"}),
 ("sun.sun", "below_horizon", {"next_dawn": "2025-04-02T04:41:10.123456+00:00", "next_rising": "2025-04-02T05:15:00+00:00", "elevation": -12.5, "azimuth": 300.1, "rising": False, "friendly_name": "Sun"}),
 ("image.doorbell_snapshot", "2025-04-01T09:59:58.000123+00:00", {"access_token": "a1b2c3d4e5f6", "entity_picture": "/api/image_proxy/image.doorbell_snapshot?token=a1b2c3d4e5f6", "friendly_name": "Doorbell snapshot"}),
 ("lawn_mower.front", "mowing", {"supported_features": 7, "friendly_name": "Front lawn"}),
 ("lawn_mower.back", "docked", {"supported_features": 7, "friendly_name": "Back lawn"}),
 ("remote.living_room_tv", "on", {"activity_list": ["Watch TV", "Play Xbox, loud", "Music"], "current_activity": "Watch TV", "supported_features": 4, "friendly_name": "Living room TV"}),
 ("sensor.weather_condition", "partly cloudy, windy", {"friendly_name": "Condition \"outside\""}),
 ("sensor.broken", "error", {"friendly_name": "Broken sensor", "error": "error"}),
 ("sensor.nasty_attrs", "1", {"comma": "a, b, c", "quote": "say \"hi\" and 'bye'", "newline": "line1\nline2\r\nline3", "unicode": "Zürich ☃ 😀 中文 \u200b", "backslash": "C:\\temp\\", "equals": "a=b,c=d", "list_of_text": ["it's", "a \"b\"", "x\ny", "\u00a0\u200b\u0007"], "nested": {"a": [1, 2.5, None, True], "b": {"c": "d"}}, "big": 2**64-1, "bigneg": -2**63, "neg": -0.0, "tiny": 1.5e-7, "huge": 1e300, "numstr": "1_000", "spaced": " 42 ", "infstr": "inf", "nanstr": "nan", "null": None, "empty": "", "state": "shadow", "value": 3, "time": 5, "x": "text", "x_str": 7, "digits": "room 12b", "hex": "deadbeef1234", "version": "v1.2.3", "ip": "192.168.1.10", "temp": "21.5 °C", "arabic": "٣٤", "unit_of_measurement": "kWh", "device_class": "energy", "friendly_name": "Nasty, \"attrs\""}),
 ("sensor.flip", "12.5", {"reading": 12.5, "unit_of_measurement": "W", "friendly_name": "Flip"}),
 ("sensor.flip", "13", {"reading": "n/a", "unit_of_measurement": "W", "friendly_name": "Flip"}),
 ("sensor.flip", "14", {"reading": "14 kWh", "unit_of_measurement": "W", "friendly_name": "Flip"}),
 ("sensor.flip", "15", {"reading": True, "unit_of_measurement": "W", "friendly_name": "Flip"}),
 ("sensor.nan_state", "nan", {"friendly_name": "NaN"}),
 ("sensor.inf_state", "-inf", {"friendly_name": "Inf"}),
 ("sensor.underscored", "1_000", {"unit_of_measurement": "", "friendly_name": "Underscored"}),
 ("sensor.padded", " 7.5 ", {"unit_of_measurement": "%", "device_class": None}),
 ("sensor.unknown_one", "unknown", {"unit_of_measurement": "W"}),
 ("sensor.unavailable_one", "unavailable", {}),
 ("sensor.empty_one", "", {}),
 ("sensor.energy_today", "3.25", {"state_class": "total_increasing", "last_reset": "2025-04-01T00:00:00+00:00", "unit_of_measurement": "kWh", "device_class": "energy", "friendly_name": "Energy today"}),
 ("sensor.last_boot", "2025-03-30T08:12:45+00:00", {"device_class": "timestamp", "friendly_name": "Last boot"}),
 ("automation.morning", "on", {"id": "1712345678901", "last_triggered": "2025-04-01T06:30:00.004321+00:00", "mode": "single", "current": 0, "friendly_name": "Morning"}),
 ("input_number.target", "21.0", {"initial": None, "editable": True, "min": 5.0, "max": 30.0, "step": 0.5, "mode": "slider", "unit_of_measurement": "°C", "friendly_name": "Target"}),
 ("binary_sensor.door", "off", {"device_class": "door", "friendly_name": "Door"}),
 ("binary_sensor.problem", "on", {"device_class": "problem", "friendly_name": "Problem"}),
 ("switch.plug", "on", {"current_power_w": 12.3, "friendly_name": "Plug"}),
 ("button.restart", "2025-04-01T09:00:00.000001+00:00", {"device_class": "restart", "friendly_name": "Restart"}),
 ("event.doorbell", "2025-04-01T09:59:59.999999+00:00", {"event_types": ["ring", "long_press"], "event_type": "ring", "device_class": "doorbell", "friendly_name": "Doorbell"}),
 ("siren.kitchen", "off", {"available_tones": {"1": "fire", "2": "alarm"}, "supported_features": 31, "friendly_name": "Kitchen siren"}),
 ("calendar.work", "off", {"message": "Stand-up, daily", "all_day": False, "start_time": "2025-04-02 09:00:00", "end_time": "2025-04-02 09:15:00", "location": "Room 4.2", "description": "", "friendly_name": "Work"}),
 ("camera.garden", "idle", {"access_token": "0123456789abcdef", "entity_picture": "/api/camera_proxy/camera.garden?token=0123456789abcdef", "frontend_stream_type": "hls", "brand": "Acme", "model_name": "Cam 2.0", "friendly_name": "Garden"}),
 ("valve.garden", "opening", {"current_position": 40, "supported_features": 15, "friendly_name": "Garden valve"}),
 ("weather.home", "clear-night", {"temperature": -3.4, "apparent_temperature": -7.0, "dew_point": -5.2, "temperature_unit": "°C", "humidity": 81, "cloud_coverage": 0, "uv_index": 0.0, "pressure": 1021.3, "pressure_unit": "hPa", "wind_bearing": 225.5, "wind_speed": 11.2, "wind_speed_unit": "km/h", "visibility_unit": "km", "precipitation_unit": "mm", "attribution": "Data from Met.no", "friendly_name": "Home"}),
 ("media_player.tv", "paused", {"volume_level": 0.31, "is_volume_muted": False, "media_content_type": "tvshow", "media_duration": 2701, "media_position": 1200, "media_position_updated_at": "2025-04-01T09:58:00.654321+00:00", "media_title": "Episode 7, \"The Return\"", "source_list": ["HDMI 1", "HDMI 2"], "group_members": ["media_player.tv"], "friendly_name": "TV"}),
 ("climate.office", "heat", {"hvac_modes": ["off", "heat", "heat_cool"], "min_temp": 7, "max_temp": 35, "target_temp_step": 0.5, "fan_modes": ["auto", "low"], "preset_modes": ["none", "eco"], "current_temperature": 20.5, "temperature": 21, "target_temp_high": None, "target_temp_low": None, "fan_mode": "auto", "preset_mode": "eco", "hvac_action": "heating", "supported_features": 401, "friendly_name": "Office"}),
 ("light.desk", "on", {"supported_color_modes": ["color_temp", "xy"], "color_mode": "xy", "brightness": 255, "hs_color": [26.812, 34.87], "rgb_color": [255, 205, 166], "xy_color": [0.421, 0.364], "color_temp_kelvin": None, "effect_list": ["none", "colorloop"], "effect": None, "friendly_name": "Desk"}),
 ("alarm_control_panel.house", "armed_away", {"code_format": "number", "changed_by": "Anne", "code_arm_required": True, "supported_features": 63, "friendly_name": "House"}),
 ("vacuum.robo", "cleaning", {"fan_speed_list": ["quiet", "max"], "battery_level": 87, "battery_icon": "mdi:battery-80", "fan_speed": "quiet", "status": "Cleaning, zone 2", "supported_features": 14204, "friendly_name": "Robo"}),
 ("water_heater.boiler", "eco", {"min_temp": 40, "max_temp": 65, "operation_list": ["eco", "performance"], "operation_mode": "eco", "away_mode": "off", "current_temperature": 51.5, "temperature": 55, "friendly_name": "Boiler"}),
 ("humidifier.bedroom", "off", {"min_humidity": 30, "max_humidity": 80, "available_modes": ["normal", "sleep"], "humidity": 45, "mode": "sleep", "action": "off", "device_class": "humidifier", "friendly_name": "Bedroom"}),
 ("update.router", "on", {"auto_update": False, "installed_version": "7.12.1", "latest_version": "7.14", "in_progress": False, "release_summary": "Fixes, improvements\n- VPN", "release_url": "https://example.com/7.14", "skipped_version": None, "title": "RouterOS", "update_percentage": None, "friendly_name": "Router"}),
 ("date.birthday", "1990-02-28", {"friendly_name": "Birthday"}),
 ("time.alarm", "06:45:00", {"friendly_name": "Alarm"}),
 ("datetime.next_service", "2025-06-01T08:00:00+00:00", {"friendly_name": "Next service"}),
 ("number.volume", "0.45", {"min": 0, "max": 1, "step": 0.05, "mode": "slider", "friendly_name": "Volume"}),
 ("select.mode", "Eco, quiet", {"options": ["Eco, quiet", "Boost"], "friendly_name": "Mode"}),
 ("text.note", "Buy milk\nand eggs", {"min": 0, "max": 255, "pattern": None, "mode": "text", "friendly_name": "Note"}),
 ("cover.garage", "opening", {"current_position": 35, "device_class": "garage", "supported_features": 15, "friendly_name": "Garage"}),
 ("fan.attic", "on", {"percentage": 66, "percentage_step": 33.333333333333336, "preset_modes": None, "oscillating": True, "direction": "forward", "supported_features": 55, "friendly_name": "Attic"}),
 ("lock.back", "jammed", {"supported_features": 0, "friendly_name": "Back door"}),
 ("device_tracker.phone", "not_home", {"source_type": "gps", "battery_level": 54, "latitude": 52.1, "longitude": 4.3, "gps_accuracy": 20, "friendly_name": "Phone"}),
 ("group.lights", "on", {"entity_id": ["light.desk", "light.kitchen"], "order": 0, "friendly_name": "Lights"}),
 ("sensor.weird_unit", "5", {"unit_of_measurement": "a=b\\c d,e", "friendly_name": "Weird unit"}),
 ("sensor.weird_key", "5", {"key with space": 1, "k,e=y": "v", "back\\slash": 2, "new\nline": "x", "unit_of_measurement": "x"}),
 ("sensor.trailing_key", "5", {"trail\\": 1, "unit_of_measurement": "x"}),
 ("sensor.trailing_unit", "5", {"unit_of_measurement": "bad\\"}),
 ("schedule.heating", "on", {"next_event": "2025-04-01T22:00:00+02:00", "editable": True, "friendly_name": "Heating"}),
 ("light.rgbww", "on", {"supported_color_modes": ["rgbww"], "color_mode": "rgbww", "brightness": 180, "hs_color": [0.923, 50.98], "rgb_color": [255, 127, 125], "rgbww_color": [255, 0, 0, 255, 0], "xy_color": [0.528, 0.315], "friendly_name": "RGBWW"}),
 ("sensor.co2", "612", {"state_class": "measurement", "unit_of_measurement": "ppm", "device_class": "carbon_dioxide", "friendly_name": "CO₂"}),
]
out = open(sys.argv[1], "w")
from homeassistant.components.climate import HVACMode
from homeassistant.components.light import ColorMode
def pytypes(attrs):
    a = dict(attrs)
    for k in ("hs_color", "rgb_color", "xy_color", "rgbw_color", "rgbww_color"):
        if isinstance(a.get(k), list): a[k] = tuple(a[k])
    if "hvac_modes" in a: a["hvac_modes"] = [HVACMode(m) for m in a["hvac_modes"]]
    if "supported_color_modes" in a: a["supported_color_modes"] = [ColorMode(m) for m in a["supported_color_modes"]]
    for k in ("last_triggered", "media_position_updated_at", "next_event"):
        if isinstance(a.get(k), str): a[k] = dt.datetime.fromisoformat(a[k])
    return a
for i, (eid, st, attrs) in enumerate(EVENTS):
    attrs = pytypes(attrs)
    t = base + dt.timedelta(seconds=i)
    state = State(eid, st, attrs, last_changed=t, last_updated=t)
    ev = Event("state_changed", {"entity_id": eid, "old_state": None, "new_state": state}, time_fired_timestamp=(t + dt.timedelta(microseconds=777)).timestamp())
    rec = {"event": json.loads(json_bytes(ev.as_dict()))}
    rec["lines"] = {name: (None if (j := conv(ev)) is None else make_lines({"points": [j]})) for name, conv in convs.items()}
    out.write(json.dumps(rec, ensure_ascii=False) + "\n")
# removal event
ev = Event("state_changed", {"entity_id": "sensor.gone", "old_state": State("sensor.gone", "1", {}), "new_state": None})
rec = {"event": json.loads(json_bytes(ev.as_dict()))}
rec["lines"] = {name: (None if (j := conv(ev)) is None else make_lines({"points": [j]})) for name, conv in convs.items()}
out.write(json.dumps(rec, ensure_ascii=False) + "\n")
