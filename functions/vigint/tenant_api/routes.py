"""The tenant API's route table: one list used both for dispatch and for ``GET /openapi.json``."""

from __future__ import annotations

from vigint.tenant_api import analytics, cameras, commands, devices, events, openapi, tenant
from vigint.tenant_api import links
from vigint.tenant_api import models as m
from vigint.tenant_api.http import Route

KEY_ID = {"key_id": r"^[0-9a-f]{12}$"}

ROUTES: list[Route] = [
    Route("GET", "/openapi.json", lambda req: (openapi.document(ROUTES), 200), "This OpenAPI document",
          "meta", role=None),
    # tenant
    Route("GET", "/v1/tenant", tenant.get_tenant, "The API key's tenant and its settings", "tenant",
          response=m.TenantOut),
    Route("PATCH", "/v1/tenant", tenant.patch_tenant, "Change the tenant's settings", "tenant", role="admin",
          body=m.TenantPatch, response=m.TenantOut),
    Route("GET", "/v1/api-keys", tenant.list_api_keys, "The tenant's API keys (no secrets)", "api-keys",
          role="admin", response=m.ApiKeyList),
    Route("POST", "/v1/api-keys", tenant.create_api_key, "Create an API key (shown once)", "api-keys",
          role="admin", body=m.ApiKeyIn, response=m.ApiKeyCreated, status=201),
    Route("DELETE", "/v1/api-keys/{key_id}", tenant.revoke_api_key, "Revoke an API key", "api-keys",
          role="admin", response=m.ApiKeyOut, params=KEY_ID),
    # devices
    Route("GET", "/v1/devices", devices.list_devices, "Devices with status and health", "devices",
          response=m.DeviceList),
    Route("POST", "/v1/devices/enrollment-codes", devices.create_enrollment_code,
          "A one-use enrollment code for a new device", "devices", role="admin", body=m.EnrollmentCodeIn,
          response=m.EnrollmentCodeOut, status=201),
    Route("GET", "/v1/devices/{device_id}", devices.get_device, "One device", "devices",
          response=m.DeviceOut, params=devices.PARAMS),
    Route("POST", "/v1/devices/{device_id}/revoke", devices.revoke_device, "Revoke a device", "devices",
          role="admin", response=m.DeviceOut, params=devices.PARAMS),
    Route("POST", "/v1/devices/{device_id}/rotate-key", devices.rotate_key,
          "New device secret (shown once); the old one stops working", "devices", role="admin",
          response=m.DeviceCredentials, params=devices.PARAMS),
    Route("POST", "/v1/devices/{device_id}/commands", commands.create_command,
          "Queue a command (with its parameters) for the device's next heartbeat", "devices", role="admin",
          body=m.CommandIn, response=m.CommandOut, status=201, params=devices.PARAMS),
    Route("GET", "/v1/devices/{device_id}/commands", commands.list_commands,
          "The device's commands and their results, newest first, paginated", "devices",
          query=m.CommandsQuery, response=m.CommandPage, params=devices.PARAMS),
    Route("GET", "/v1/devices/{device_id}/commands/{command_id}", commands.get_command,
          "One command and the device's result", "devices", response=m.CommandOut, params=commands.PARAMS),
    # cameras
    Route("GET", "/v1/cameras", cameras.list_cameras, "Cameras and their zones", "cameras",
          query=m.CamerasQuery, response=m.CameraList),
    Route("POST", "/v1/cameras", cameras.create_camera, "Add a camera to a device", "cameras", role="admin",
          body=m.CameraIn, response=m.CameraOut, status=201),
    Route("GET", "/v1/cameras/{camera_id}", cameras.get_camera, "One camera", "cameras",
          response=m.CameraOut, params=cameras.PARAMS),
    Route("PATCH", "/v1/cameras/{camera_id}", cameras.patch_camera, "Change a camera or its zones", "cameras",
          role="admin", body=m.CameraPatch, response=m.CameraOut, params=cameras.PARAMS),
    Route("DELETE", "/v1/cameras/{camera_id}", cameras.delete_camera, "Delete a camera", "cameras",
          role="admin", response=m.CameraOut, params=cameras.PARAMS),
    Route("POST", "/v1/cameras/{camera_id}/erase", cameras.erase_camera,
          "Delete everything the camera recorded (events, links, clips, snapshots)", "cameras", role="admin",
          response=m.ErasedOut, params=cameras.PARAMS),
    # events and alerts
    Route("GET", "/v1/events", events.list_events, "Events, newest first, filtered and paginated", "events",
          query=m.EventsQuery, response=m.EventPage),
    Route("GET", "/v1/events/{event_id}", events.get_event,
          "One event with its analysis and fresh signed clip/snapshot URLs", "events",
          response=m.EventDetail, params=events.PARAMS),
    Route("GET", "/v1/alerts", events.list_alerts, "Alerted events, newest first, paginated", "alerts",
          query=m.AlertsQuery, response=m.EventPage),
    Route("GET", "/v1/alerts/unacknowledged-count", events.unacknowledged_count,
          "How many alerts are not acknowledged", "alerts", response=m.UnacknowledgedCount),
    Route("POST", "/v1/alerts/{event_id}/ack", events.ack_alert, "Acknowledge an alert", "alerts",
          role="admin", response=m.AckOut, params=events.PARAMS),
    # links
    Route("GET", "/v1/events/{event_id}/links", links.list_links,
          "The event's video links: recipient, expiry, revocation, state and accesses (never the token)", "links",
          response=m.LinkList, params=links.EVENT_LINK_PARAMS),
    Route("POST", "/v1/events/{event_id}/links/revoke", links.revoke_event_links,
          "Revoke every video link of the event (410 from the next request; media URLs end within 60 s)",
          "links", role="admin", response=m.LinksRevoked, params=links.EVENT_LINK_PARAMS),
    Route("POST", "/v1/links/{link_id}/revoke", links.revoke_link,
          "Revoke one video link (410 from the next request; media URLs end within 60 s)", "links",
          role="admin", response=m.LinkOut, params=links.PARAMS),
    # analytics
    Route("GET", "/v1/analytics/counts", analytics.counts, "Detection counts per hour or day (kind= for others)",
          "analytics", query=m.CountsQuery, response=m.CountsOut),
    Route("GET", "/v1/usage", analytics.usage, "Use in one month", "analytics", query=m.UsageQuery,
          response=m.UsageOut),
]
