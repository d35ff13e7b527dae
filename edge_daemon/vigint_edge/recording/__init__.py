"""Recording: event clips (remuxed or encoded), live MPEG-TS segments and the pre-roll recorder."""
