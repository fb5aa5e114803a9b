"""TWI transparency log: core (tlog.log), storage (tlog.storage), tiles (tlog.layout), HTTP (tlog.server)."""
