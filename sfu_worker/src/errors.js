'use strict';

// JSON-RPC error codes (2.0 spec for protocol errors, -320xx for ours).
const RPC_ERRORS = {
  PARSE_ERROR: -32700,
  INVALID_REQUEST: -32600,
  METHOD_NOT_FOUND: -32601,
  INVALID_PARAMS: -32602,
  INTERNAL: -32603,
  NOT_FOUND: -32004,
  UNSUPPORTED: -32005,
  UNAVAILABLE: -32006,
  DRAINING: -32007,
};

class RpcError extends Error {
  constructor(type, message) {
    super(message);
    this.type = type;
    this.code = RPC_ERRORS[type] ?? RPC_ERRORS.INTERNAL;
  }
}

module.exports = { RpcError, RPC_ERRORS };
