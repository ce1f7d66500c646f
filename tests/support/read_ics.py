"""Reads an iCalendar object on stdin with the `icalendar` package (a parser independent of the
server's writer) and prints its first event as JSON: uid, summary, location, sequence, and
start/end as ISO 8601 with their time zone."""

import json
import sys

from icalendar import Calendar

calendar = Calendar.from_ical(sys.stdin.buffer.read())
event = next(c for c in calendar.walk() if c.name == "VEVENT")
start = event.decoded("DTSTART")
end = event.decoded("DTEND")
print(json.dumps({
    "method": str(calendar.get("METHOD")),
    "uid": str(event.get("UID")),
    "summary": str(event.get("SUMMARY")),
    "location": str(event.get("LOCATION", "")),
    "sequence": int(event.get("SEQUENCE", 0)),
    "start": start.isoformat(),
    "end": end.isoformat(),
    "tz": str(start.tzinfo),
}))
