# Seeds the test Home Assistant for benches/import_ha/run.sh: SENSORS STATES DAYS (sensor.bench_*).
import asyncio, json, os, sys, time, datetime as dt
import aiohttp
URL=os.environ["HA_URL"]; TOKEN=os.environ["HA_TOKEN"]
N_ENT=int(sys.argv[1]); N_STATES=int(sys.argv[2]); DAYS=int(sys.argv[3])
H={"Authorization":f"Bearer {TOKEN}"}
async def main():
    async with aiohttp.ClientSession(headers=H) as s:
        t=time.time()
        sem=asyncio.Semaphore(8)
        async def post(e,i):
            async with sem:
                async with s.post(f"{URL}/api/states/sensor.bench_{e}", json={"state":str(i*1.5),"attributes":{"unit_of_measurement":"W","friendly_name":f"Bench {e}"}}) as r:
                    assert r.status in (200,201), await r.text()
        for i in range(N_STATES):
            await asyncio.gather(*(post(e,i) for e in range(N_ENT)))
        print("states posted", N_ENT*N_STATES, "in", round(time.time()-t,1), "s")
        async with s.ws_connect(URL.replace("http","ws")+"/api/websocket", max_msg_size=0) as ws:
            await ws.receive_json(); await ws.send_json({"type":"auth","access_token":TOKEN}); await ws.receive_json()
            last=(dt.datetime.now(dt.timezone.utc)-dt.timedelta(days=2)).replace(minute=0,second=0,microsecond=0)
            n=DAYS*24
            for e in range(N_ENT):
                stats=[{"start":(last-dt.timedelta(hours=n-1-h)).isoformat(),"mean":float(h%24),"min":0.0,"max":30.0} for h in range(n)]
                await ws.send_json({"id":e+1,"type":"recorder/import_statistics","metadata":{"has_mean":True,"has_sum":False,"name":None,"source":"recorder","statistic_id":f"sensor.bench_{e}","unit_of_measurement":"W"},"stats":stats})
                r=await ws.receive_json(); assert r.get("success"), r
        print("statistics imported", N_ENT*n)
asyncio.run(main())
