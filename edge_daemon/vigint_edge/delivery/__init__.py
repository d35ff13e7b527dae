"""Delivery: the durable spool, its lanes, uploads through signed URLs and Pub/Sub publishing."""
