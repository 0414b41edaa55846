"""The privacy view's page: the MJPEG stream and a table of the current tracks, without names.

(The live view's pages, with faces and names, are in web/.)"""

PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>facetrack live: {stack}</title>
<style>
  body {{ font-family: sans-serif; margin: 12px; background: #fff; color: #111; }}
  #video {{ display: block; border: 1px solid #888; }}
  table {{ border-collapse: collapse; margin-top: 8px; }}
  td, th {{ border: 1px solid #aaa; padding: 2px 8px; text-align: right; }}
  .swatch {{ display: inline-block; width: 12px; height: 12px; }}
</style>
</head>
<body>
<img id="video" src="/stream.mjpg" alt="live video">
<div id="status">waiting for tracks</div>
<table>
  <thead><tr><th>id</th><th>box [x1, y1, x2, y2]</th><th>score</th><th>state</th></tr></thead>
  <tbody id="tracks"></tbody>
</table>
<script>
const row = t => `<tr><td><span class="swatch" style="background:${{t.color}}"></span> ${{t.id}}</td>` +
  `<td>${{t.box.map(v => v.toFixed(0)).join(", ")}}</td><td>${{t.score.toFixed(2)}}</td><td>${{t.state}}</td></tr>`;
async function poll() {{
  try {{
    // against the origin: a page opened as http://user:pw@host/ would give fetch() a URL with credentials, which it refuses
    const r = await fetch(new URL("/tracks.json", location.origin), {{cache: "no-store"}});
    if (r.ok) {{
      const d = await r.json();
      document.getElementById("status").textContent = `frame ${{d.frame_id}} (source ${{d.source_pos}})`;
      document.getElementById("tracks").innerHTML = d.tracks.map(row).join("");
    }}
  }} catch (e) {{
    document.getElementById("status").textContent = "no connection";
  }}
  setTimeout(poll, 200);
}}
poll();
</script>
</body>
</html>
"""
