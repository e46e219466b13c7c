"""Captures a real `history/history_during_period` reply from Home Assistant 2025.4.4 as a fixture.

Posts a few state changes through REST (recording what HA answered), waits for the recorder, then
asks for the history exactly as HomeIQ's backfill does.
"""
import asyncio, json, os, sys, datetime
import aiohttp

URL = os.environ["HA_URL"]; TOKEN = os.environ["HA_TOKEN"]
OUT = sys.argv[1]
H = {"Authorization": f"Bearer {TOKEN}"}

CHANGES = [
    ("sensor.homeiq_fixture_power", "12.5", {"unit_of_measurement": "W", "device_class": "power", "friendly_name": "Fixture power"}),
    ("sensor.homeiq_fixture_power", "13", {"unit_of_measurement": "W", "device_class": "power", "friendly_name": "Fixture power"}),
    # attribute-only change: last_changed stays, last_updated moves
    ("sensor.homeiq_fixture_power", "13", {"unit_of_measurement": "W", "device_class": "power", "friendly_name": "Fixture power", "note": "Größe ✓", "nested": {"a": [1, 2.5, None, True]}}),
    ("sensor.homeiq_fixture_power", "unavailable", {"unit_of_measurement": "W", "device_class": "power", "friendly_name": "Fixture power"}),
    ("sensor.homeiq_fixture_power", "14.25", {"unit_of_measurement": "W", "device_class": "power", "friendly_name": "Fixture power"}),
    ("binary_sensor.homeiq_fixture_door", "on", {"device_class": "door"}),
    ("binary_sensor.homeiq_fixture_door", "off", {"device_class": "door"}),
    ("sensor.homeiq_fixture_text", "hello, world = \"quoted\"", {}),
]

async def main():
    async with aiohttp.ClientSession(headers=H) as s:
        start = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(seconds=1)
        answered = []
        for entity, state, attrs in CHANGES:
            async with s.post(f"{URL}/api/states/{entity}", json={"state": state, "attributes": attrs}) as r:
                body = await r.json()
                answered.append({"entity_id": entity, "state": body["state"], "last_updated": body["last_updated"], "last_changed": body["last_changed"]})
            await asyncio.sleep(0.02)
        end = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(milliseconds=1)
        await asyncio.sleep(2.5)  # recorder commit_interval is 1 s in the test configuration
        async with s.ws_connect(f"{URL}/api/websocket") as ws:
            await ws.receive_json()
            await ws.send_json({"type": "auth", "access_token": TOKEN})
            assert (await ws.receive_json())["type"] == "auth_ok"
            cmd = {"id": 1, "type": "history/history_during_period",
                   "start_time": start.isoformat(), "end_time": end.isoformat(),
                   "entity_ids": ["sensor.homeiq_fixture_power", "binary_sensor.homeiq_fixture_door",
                                  "sensor.homeiq_fixture_text", "sensor.homeiq_fixture_never_existed"],
                   "include_start_time_state": False, "significant_changes_only": False,
                   "minimal_response": False, "no_attributes": False}
            await ws.send_json(cmd)
            msg = await ws.receive()
            raw = msg.data
    with open(os.path.join(OUT, "ha_2025_4_4_history_during_period.json"), "w") as f:
        f.write(raw)
        f.write("\n")
    with open(os.path.join(OUT, "ha_2025_4_4_history_expected.json"), "w") as f:
        json.dump({"request": cmd, "posted": answered}, f, indent=1, ensure_ascii=False)
        f.write("\n")
    print(raw[:2000])

asyncio.run(main())
