/* The link page's player (templates/video_page.html): plays the event's HLS playlist live while it is
 * recorded and on to its end, and refreshes the verdict from state.json, all without a reload.
 *
 * - hls.js (vendored, /v/static/hls.light.min.js) where Hls.isSupported() (Chromium, Firefox: Media Source
 *   Extensions), the browser's own HLS otherwise (Safari), as hls.js's README recommends.
 * - While recording: starts two target durations behind the live edge; everything since the start stays
 *   seekable (EXT-X-PLAYLIST-TYPE:EVENT). Once the playlist has EXT-X-ENDLIST it plays as a whole video.
 * - A fatal network error (e.g. a segment URL expired): asks state.json whether the link still holds; 410
 *   shows "link expired", otherwise the playlist (freshly signed) is reloaded once and playback resumes.
 * - state.json every 2.5 s while recording, every 5 s for a few minutes after the end (the full AI verdict
 *   and a split's continuation arrive then).
 * - Signed URLs live about a minute (a revoked link stops within one): before hls.js downloads a segment
 *   whose URL has less than min(10 s, a quarter of its lifetime) left (X-Goog-Date + X-Goog-Expires, on the
 *   server's clock as its Date headers tell), the page fetches the playlist again and uses the fresh URL of
 *   that segment; a live playlist's own reloads renew them too. The MP4 of an old event gets a fresh URL
 *   from state.json when the <video> fails; the download buttons point at the page's own download/{n}
 *   route, which answers with a freshly signed URL.
 */
(function () {
  "use strict";

  var app = document.getElementById("app");
  if (!app) { return; }
  var mode = app.dataset.mode;
  var stateUrl = app.dataset.state;
  var playlistUrl = app.dataset.playlist;
  var linkBase = app.dataset.link || "";
  // The link page sends no cookies (the token in the URL is the credential); the console's event page asks
  // for "same-origin" (data-credentials): its state.json and playlist need the session cookie.
  var credentials = app.dataset.credentials === "same-origin" ? "same-origin" : "omit";
  var video = document.getElementById("video");
  var clipVideo = document.getElementById("clip");

  var LIVE_POLL_MS = 2500, ENDED_POLL_MS = 5000, ENDED_POLLS = 36;
  var ended = app.dataset.ended === "true";
  var segments = parseInt(app.dataset.segments || "0", 10);
  var endedPolls = 0, expired = false, pollTimer = null;

  var hls = null;                 // the Hls instance, when hls.js plays
  var started = false;            // playback source set
  var starting = false;           // start() ran: a player exists (it sets started once the playlist is parsed)
  var playlistEnded = false;      // the last playlist loaded had EXT-X-ENDLIST
  var playlistSegments = 0;       // segments in the last playlist loaded
  var reloadedSinceProgress = false, mediaRecovered = false;
  var snapshotSha = null;

  function $(id) { return document.getElementById(id); }

  function durationWords(seconds) {
    var s = Math.max(0, Math.round(seconds)), parts = [];
    var units = [["day", 86400], ["hour", 3600], ["minute", 60], ["second", 1]];
    for (var i = 0; i < units.length && parts.length < 2; i++) {
      var n = Math.floor(s / units[i][1]);
      s -= n * units[i][1];
      if (n) { parts.push(n + " " + units[i][0] + (n !== 1 ? "s" : "")); }
    }
    return parts.join(" and ") || "0 seconds";
  }

  function showError(text) {
    var el = $("player-error");
    if (el) { el.textContent = text; el.hidden = false; }
  }

  function showExpired() {
    if (expired) { return; }
    expired = true;
    if (pollTimer) { clearTimeout(pollTimer); }
    if (hls) { hls.destroy(); hls = null; }
    [video, clipVideo].forEach(function (v) { if (v) { v.removeAttribute("src"); v.load(); } });
    $("expired").hidden = false;
    $("status").hidden = true;
  }

  // ------------------------------------------------------------ state.json

  function render(st) {
    document.title = st.threat_word + ": " + st.title;
    var threat = $("threat");
    threat.textContent = st.threat_word;
    threat.className = "threat level-" + st.threat_level;
    $("title").textContent = st.title;
    $("summary").textContent = st.summary || "";
    $("verdict-note").textContent = st.verdict_note || "";
    $("integrity-note").textContent = st.integrity_note || "";  // ingest's check of the stored objects
    $("integrity").hidden = !st.integrity_note;
    $("labels").textContent = st.labels.length ? st.labels.join(", ") : "nothing recognised";
    var status = $("status");
    status.textContent = st.ended ? "Ended" : "Recording";
    status.className = "status " + (st.ended ? "status-ended" : "status-live");
    $("duration").textContent = durationWords(st.duration_s) + (st.ended ? "" : " so far, still recording");
    var box = $("downloads");
    box.textContent = "";
    (st.downloads || []).forEach(function (d, i, all) {
      var a = document.createElement("a");
      a.className = "button";
      a.rel = "noopener";
      a.href = linkBase + d.path;
      a.textContent = "Download video" + (all.length > 1 ? " (part " + (i + 1) + ")" : "") + " (MP4)";
      box.appendChild(a);
    });
    box.hidden = !(st.downloads && st.downloads.length);
    if (st.snapshot_url && st.snapshot_sha256 && st.snapshot_sha256 !== snapshotSha) {
      var img = $("snapshot");
      if (img) { img.src = st.snapshot_url; }
      if (video && !started) { video.poster = st.snapshot_url; }
    }
    snapshotSha = st.snapshot_sha256;
  }

  function schedule() {
    if (expired) { return; }
    if (ended) {
      if (++endedPolls > ENDED_POLLS) { return; }
    }
    pollTimer = setTimeout(poll, ended ? ENDED_POLL_MS : LIVE_POLL_MS);
  }

  function poll() {
    fetch(stateUrl, {cache: "no-store", credentials: credentials}).then(function (r) {
      noteServerDate(r);
      if (r.status === 410 || r.status === 404) { showExpired(); return null; }
      return r.ok ? r.json() : null;
    }).then(function (st) {
      if (!st) { return; }
      ended = st.ended;
      segments = st.segments;
      render(st);
      if (mode === "hls") {
        if (!started && segments > 0) { start(); }
        // A split's continuation that the cloud learnt of after the playlist had ended: fetch it again.
        else if (hls && playlistEnded && segments > playlistSegments) { reloadPlaylist(); }
      }
      if (ended && st.verdict === "full" && st.complete) { endedPolls = ENDED_POLLS; }
    }).catch(function () { /* offline for a moment: the next poll tries again */ }).then(schedule);
  }

  // ------------------------------------------------------------ signed URL lifetimes

  var serverSkewMs = 0, skewKnown = false;  // (server clock - this clock), a bound from above (see below)
  var freshUrls = {};                       // URL without its query -> the URL of it that lasts longest
  var refreshing = null;                    // the playlist fetch under way, if any
  var urlRefreshes = 0;

  function noteServerDate(r) {
    // Date has whole seconds and was written before the answer arrived: the server's clock is at most 1 s
    // ahead of (Date - arrival); the largest such bound seen wins (a late answer only lowers its own).
    var d = Date.parse(r.headers.get("Date") || "");
    if (isNaN(d)) { return; }
    var skew = d - Date.now() + 1000;
    serverSkewMs = skewKnown ? Math.max(serverSkewMs, skew) : skew;
    skewKnown = true;
  }

  function urlLifetimeMs(url) {
    var e = /[?&]X-Goog-Expires=(\d+)/.exec(url);
    return e ? 1000 * parseInt(e[1], 10) : Infinity;
  }

  function urlExpiresAt(url) {   // on this browser's clock (ms); Infinity for a URL that does not expire
    var m = /[?&]X-Goog-Date=(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z/.exec(url);
    if (!m) { return Infinity; }
    var signed = Date.UTC(+m[1], +m[2] - 1, +m[3], +m[4], +m[5], +m[6]);
    return signed + urlLifetimeMs(url) - serverSkewMs;
  }

  function stale(url) {          // too little time left to start downloading a segment with it
    return urlExpiresAt(url) - Date.now() < Math.min(10000, urlLifetimeMs(url) / 4);
  }

  function remember(url) {
    var key = url.split("?")[0], had = freshUrls[key];
    if (!had || urlExpiresAt(url) > urlExpiresAt(had)) { freshUrls[key] = url; }
  }

  function freshest(url) {
    var had = freshUrls[url.split("?")[0]];
    return had && urlExpiresAt(had) > urlExpiresAt(url) ? had : url;
  }

  function refreshUrls() {       // one playlist fetch at a time; resolves once its URLs are remembered
    if (!refreshing) {
      urlRefreshes++;
      app.dataset.urlRefreshes = String(urlRefreshes);
      refreshing = fetch(playlistUrl, {cache: "no-store", credentials: credentials}).then(function (r) {
        noteServerDate(r);
        if (r.status === 410 || r.status === 404) { showExpired(); return ""; }
        return r.ok ? r.text() : "";
      }).then(function (text) {
        text.split("\n").forEach(function (line) {
          line = line.trim();
          if (line && line.charAt(0) !== "#") { remember(line); }
        });
      }).catch(function () { /* offline for a moment: the segment is tried with the URL it has */ })
        .then(function () { refreshing = null; });
    }
    return refreshing;
  }

  function freshFragmentLoader() {
    // hls.js's own loader, given the freshest URL of each segment, renewed first when it is about to expire.
    var Base = Hls.DefaultConfig.loader;
    return class extends Base {
      load(context, config, callbacks) {
        this.vigintAborted = false;
        context.url = freshest(context.url);
        if (!stale(context.url)) { super.load(context, config, callbacks); return; }
        refreshUrls().then(() => {
          if (this.vigintAborted || expired) { return; }
          context.url = freshest(context.url);
          super.load(context, config, callbacks);
        });
      }
      abort() { this.vigintAborted = true; super.abort(); }
      destroy() { this.vigintAborted = true; super.destroy(); }
    };
  }

  // ------------------------------------------------------------ playback

  function play() {
    var p = video.play();
    if (p && p.catch) { p.catch(function () { /* autoplay refused: the controls are there */ }); }
  }

  function linkStillValid() {
    return fetch(stateUrl, {cache: "no-store", credentials: credentials}).then(function (r) {
      noteServerDate(r);
      return !(r.status === 410 || r.status === 404);
    }, function () { return true; });
  }

  function reloadPlaylist() {
    var at = video.currentTime;
    hls.stopLoad();
    hls.once(Hls.Events.MANIFEST_PARSED, function () { hls.startLoad(at); });
    hls.loadSource(playlistUrl);
  }

  function startHlsJs() {
    app.dataset.engine = "hls.js";
    hls = new Hls({
      autoStartLoad: false,
      enableWorker: true,           // CSP worker-src blob:
      liveSyncDurationCount: 2,     // start (and stay) two target durations behind the live edge
      fLoader: freshFragmentLoader(),
      maxBufferLength: 30,
      backBufferLength: 90,
      // A segment that fails 3 times (0.5 + 1 + 2 s) is fatal, and then the page reloads the playlist once:
      // an expired signed URL (403) does not heal by retrying it for 30 s (hls.js's default 6 tries).
      fragLoadPolicy: {default: {maxTimeToFirstByteMs: 10000, maxLoadTimeMs: 120000,
        timeoutRetry: {maxNumRetry: 4, retryDelayMs: 0, maxRetryDelayMs: 0},
        errorRetry: {maxNumRetry: 3, retryDelayMs: 500, maxRetryDelayMs: 2000}}}
    });
    hls.on(Hls.Events.MANIFEST_PARSED, function () {
      if (!started) { started = true; hls.startLoad(-1); play(); }
    });
    hls.on(Hls.Events.LEVEL_LOADED, function (_, data) {
      playlistEnded = !data.details.live;
      playlistSegments = data.details.fragments.length;
      data.details.fragments.forEach(function (frag) { remember(frag.url); });
    });
    hls.on(Hls.Events.FRAG_BUFFERED, function () {
      reloadedSinceProgress = false;
      mediaRecovered = false;
      $("player-error").hidden = true;
    });
    hls.on(Hls.Events.ERROR, function (_, data) {
      if (!data.fatal || expired) { return; }
      if (data.type === Hls.ErrorTypes.NETWORK_ERROR) {
        linkStillValid().then(function (valid) {
          if (!valid) { showExpired(); return; }
          if (reloadedSinceProgress) {
            showError("The video stopped: the connection failed. Reload the page to try again.");
            return;
          }
          reloadedSinceProgress = true;
          reloadPlaylist();   // fresh segment URLs
        });
      } else if (data.type === Hls.ErrorTypes.MEDIA_ERROR && !mediaRecovered) {
        mediaRecovered = true;
        hls.recoverMediaError();
      } else {
        showError("This video cannot be played in this browser.");
        hls.destroy();
        hls = null;
      }
    });
    hls.attachMedia(video);
    hls.loadSource(playlistUrl);
  }

  function startNative() {
    app.dataset.engine = "native";
    started = true;
    var retried = false;
    video.addEventListener("error", function () {
      linkStillValid().then(function (valid) {
        if (!valid) { showExpired(); return; }
        if (retried) { showError("The video stopped: the connection failed. Reload the page to try again."); return; }
        retried = true;
        var at = video.currentTime;
        video.src = playlistUrl;
        video.addEventListener("loadedmetadata", function () { video.currentTime = at; play(); }, {once: true});
      });
    });
    video.src = playlistUrl;
    play();
  }

  function watchClip() {
    // The MP4 of an old event: when its URL has run out (the <video> fails on its next range request), a
    // fresh one from state.json, at the same position; at most once per 10 s, so a real failure stops.
    var lastRetry = 0;
    function renew() {
      if (expired || Date.now() - lastRetry < 10000) { return; }
      lastRetry = Date.now();
      var at = clipVideo.currentTime, playing = !clipVideo.paused;
      fetch(stateUrl, {cache: "no-store", credentials: credentials}).then(function (r) {
        noteServerDate(r);
        if (r.status === 410 || r.status === 404) { showExpired(); return null; }
        return r.ok ? r.json() : null;
      }).then(function (st) {
        if (!st || !st.clip_url || expired) { return; }
        clipVideo.addEventListener("loadedmetadata", function () {
          clipVideo.currentTime = at;
          if (playing) { clipVideo.play(); }
        }, {once: true});
        clipVideo.src = st.clip_url;
      }).catch(function () { /* offline: the next error tries again */ });
    }
    clipVideo.addEventListener("error", renew);
    if (clipVideo.error) { renew(); }   // it failed before this script ran
  }

  function start() {
    if (starting) { return; }     // a state.json answer before the manifest was parsed: one player only
    starting = true;
    $("waiting").hidden = true;
    if (window.Hls && Hls.isSupported()) {
      startHlsJs();
    } else if (video.canPlayType("application/vnd.apple.mpegurl")) {
      startNative();
    } else {
      started = true;
      showError("This browser cannot play live video. Use a current version of Chrome, Edge, Firefox or Safari.");
    }
  }

  if (clipVideo) { watchClip(); }
  if (mode === "hls" && video && segments > 0) { start(); }
  snapshotSha = app.dataset.snapshot || "";
  if (mode === "hls" || !ended) { poll(); }
  else { schedule(); }
}());
