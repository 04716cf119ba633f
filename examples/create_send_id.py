#!/usr/bin/env python3
"""Create a send ID the way a generated Braze snippet does, aimed at sendid.

Python standard library only: post the JSON body with the Bearer header and
print the HTTP status and the response body, exactly as a direct call to
Braze's POST /sends/id/create would.

    SENDID_URL=http://127.0.0.1:8081 YOUR_REST_API_KEY=dev-key python3 examples/create_send_id.py

SENDID_INSECURE=1 accepts a self-signed certificate (the -dev HTTPS port).
"""
import json
import os
import ssl
import sys
import urllib.error
import urllib.request

url = os.environ.get("SENDID_URL", "http://127.0.0.1:8081") + "/sends/id/create"
api_key = os.environ.get("YOUR_REST_API_KEY", "dev-key")
payload = json.dumps({"campaign_id": "campaign_identifier", "send_id": "send_identifier"}).encode()
headers = {"Content-Type": "application/json", "Authorization": "Bearer " + api_key}

context = ssl._create_unverified_context() if os.environ.get("SENDID_INSECURE") == "1" else None
request = urllib.request.Request(url, data=payload, headers=headers, method="POST")
try:
    with urllib.request.urlopen(request, timeout=70, context=context) as response:
        status, body = response.status, response.read()
except urllib.error.HTTPError as err:  # 4xx and 5xx still carry Braze's error body
    status, body = err.code, err.read()

print(status)
print(body.decode("utf-8"))
sys.exit(0 if status < 400 else 1)
