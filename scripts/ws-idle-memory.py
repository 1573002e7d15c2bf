"""Server RSS per open widget socket, with or without the hello frame.

Usage: python3 scripts/ws-idle-memory.py N HELLO   (HELLO is 1 or 0; needs `pip install websockets`)
Start the server first (with SWITCHBOARD_WEBSOCKET__HELLO_TIMEOUT_MS=60000 for HELLO=0). Loopback only.
"""
import asyncio, sys, urllib.request, websockets
def rss():
    body = urllib.request.urlopen("http://127.0.0.1:8080/metrics").read().decode()
    return float([l for l in body.splitlines() if l.startswith("process_resident_memory_bytes ")][0].split()[1])
async def main(n, hello):
    before = rss(); conns = []
    for i in range(n):
        w = await websockets.connect("ws://127.0.0.1:8080/ws/widget", ping_interval=None)
        if hello:
            await w.send('{"type":"hello","protocol":1,"token":null}'); await w.recv()
        conns.append(w)
    await asyncio.sleep(2)
    after = rss()
    print(f"hello={hello} n={n} per conn {(after-before)/n/1024:.1f} KiB")
asyncio.run(main(int(sys.argv[1]), sys.argv[2] == "1"))
