// One turn through the playground's API: POST the query, read the NDJSON answer line by
// line as the server flushes it (request, response, each SSE event, trace, end).

import { API } from "./util.js";

export async function streamTurn(bot, body, onLine, signal) {
  const response = await fetch(`${API}/bots/${encodeURIComponent(bot)}/turn`, {
    method: "POST",
    headers: { "Content-Type": "application/json", Accept: "application/x-ndjson" },
    body: JSON.stringify(body),
    signal,
  });
  if (!response.ok) {
    const text = await response.text();
    let message = text;
    try {
      message = JSON.parse(text).error || text;
    } catch {
      // Not JSON: show the text as it came.
    }
    throw new Error(`The playground refused the turn (${response.status}): ${message}`);
  }
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += value;
    let end;
    while ((end = buffer.indexOf("\n")) >= 0) {
      const line = buffer.slice(0, end).trim();
      buffer = buffer.slice(end + 1);
      if (line) onLine(JSON.parse(line));
    }
  }
  if (buffer.trim()) onLine(JSON.parse(buffer));
}

/** Uploads one file; the answer is an Attachment ready for a user message. */
export async function upload(file) {
  const form = new FormData();
  form.append("file", file, file.name);
  const response = await fetch(`${API}/files`, { method: "POST", body: form });
  if (!response.ok) {
    let message = `${response.status} ${response.statusText}`;
    try {
      message = (await response.json()).error || message;
    } catch {
      // Keep the status line.
    }
    throw new Error(`${file.name}: ${message}`);
  }
  return response.json();
}
