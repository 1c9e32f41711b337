/* GET /openapi.json: the OpenAPI 3.1 document of every route the server
 * answers. Kept as JSON text (a GNU C raw string) so that it reads and
 * diffs as the document it is; tests/unit/openapi.c parses it and checks
 * that its paths and methods are exactly those of the route tables. It is
 * long because the document is: one schema per endpoint of both dialects,
 * and splitting a JSON document across files would make it no easier to
 * read. */
#include "api/api_int.h"

const char api_openapi_json[] = R"openapi({
  "openapi": "3.1.0",
  "info": {
    "title": "Bunker",
    "version": "1",
    "summary": "Self-hosted sandbox sessions over HTTP, in the buntime and the InstaVM dialects.",
    "description": "Every endpoint but the operations ones needs `Authorization: Bearer <key>`. Every answer to an authenticated request carries X-RateLimit-Limit, X-RateLimit-Remaining and X-RateLimit-Reset; a 429 also carries Retry-After. Creating POSTs (/sessions/create, /execute, /files/write) honour Idempotency-Key: the same key with the same request within 24 hours replays the first 2xx answer byte for byte with `Idempotent-Replayed: true`; the same key with another request is 422 idempotency_key_reused; the same key while the first request runs is 409 conflict. Keys are scoped per API key."
  },
  "servers": [{"url": "/"}],
  "security": [{"bearerAuth": []}],
  "tags": [
    {"name": "sessions"},
    {"name": "executions"},
    {"name": "files"},
    {"name": "instavm", "description": "The InstaVM dialect: snake_case JSON, FastAPI-style errors ({\"detail\": ...}), the key in `X-API-Key` or `Authorization: Bearer`."},
    {"name": "operations"}
  ],
  "paths": {
    "/sessions/create": {
      "post": {
        "tags": ["sessions"],
        "operationId": "createSession",
        "summary": "Create a session",
        "parameters": [{"$ref": "#/components/parameters/IdempotencyKey"}],
        "requestBody": {
          "required": false,
          "description": "No body is the same as {}.",
          "content": {"application/json": {"schema": {"$ref": "#/components/schemas/CreateSessionRequest"}}}
        },
        "responses": {
          "200": {
            "description": "The new session.",
            "headers": {
              "X-RateLimit-Limit": {"$ref": "#/components/headers/X-RateLimit-Limit"},
              "X-RateLimit-Remaining": {"$ref": "#/components/headers/X-RateLimit-Remaining"},
              "X-RateLimit-Reset": {"$ref": "#/components/headers/X-RateLimit-Reset"},
              "Idempotent-Replayed": {"$ref": "#/components/headers/Idempotent-Replayed"}
            },
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/SessionCreated"}}}
          },
          "400": {"$ref": "#/components/responses/InvalidRequest"},
          "401": {"$ref": "#/components/responses/Unauthorized"},
          "403": {"$ref": "#/components/responses/Forbidden"},
          "409": {"$ref": "#/components/responses/Conflict"},
          "413": {"$ref": "#/components/responses/PayloadTooLarge"},
          "422": {"$ref": "#/components/responses/IdempotencyKeyReused"},
          "429": {"$ref": "#/components/responses/RateLimited"},
          "500": {"$ref": "#/components/responses/InternalError"},
          "503": {"$ref": "#/components/responses/Unavailable"}
        }
      }
    },
    "/sessions": {
      "get": {
        "tags": ["sessions"],
        "operationId": "listSessions",
        "summary": "List the key's sessions, newest first",
        "parameters": [
          {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 100, "default": 50}},
          {"name": "offset", "in": "query", "schema": {"type": "integer", "minimum": 0, "default": 0}},
          {"name": "metadata", "in": "query", "description": "A JSON object: only sessions whose metadata contains it (JSON containment).", "schema": {"type": "string"}}
        ],
        "responses": {
          "200": {
            "description": "A page of sessions and the number of all that match.",
            "headers": {
              "X-RateLimit-Limit": {"$ref": "#/components/headers/X-RateLimit-Limit"},
              "X-RateLimit-Remaining": {"$ref": "#/components/headers/X-RateLimit-Remaining"},
              "X-RateLimit-Reset": {"$ref": "#/components/headers/X-RateLimit-Reset"}
            },
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/SessionList"}}}
          },
          "400": {"$ref": "#/components/responses/InvalidRequest"},
          "401": {"$ref": "#/components/responses/Unauthorized"},
          "429": {"$ref": "#/components/responses/RateLimited"},
          "500": {"$ref": "#/components/responses/InternalError"}
        }
      }
    },
    "/sessions/{id}/network": {
      "parameters": [{"$ref": "#/components/parameters/SessionIdPath"}],
      "get": {
        "tags": ["sessions"],
        "operationId": "getSessionNetwork",
        "summary": "A session's outbound network policy",
        "description": "Deny-all unless granted; the caps of the key's plan come with it.",
        "responses": {
          "200": {
            "description": "The session's policy now.",
            "headers": {
              "X-RateLimit-Limit": {"$ref": "#/components/headers/X-RateLimit-Limit"},
              "X-RateLimit-Remaining": {"$ref": "#/components/headers/X-RateLimit-Remaining"},
              "X-RateLimit-Reset": {"$ref": "#/components/headers/X-RateLimit-Reset"}
            },
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/NetworkPolicy"}}}
          },
          "400": {"$ref": "#/components/responses/InvalidRequest"},
          "401": {"$ref": "#/components/responses/Unauthorized"},
          "403": {"$ref": "#/components/responses/Forbidden"},
          "404": {"$ref": "#/components/responses/SessionNotFound"},
          "429": {"$ref": "#/components/responses/RateLimited"},
          "500": {"$ref": "#/components/responses/InternalError"},
          "503": {"$ref": "#/components/responses/Unavailable"}
        }
      },
      "post": {
        "tags": ["sessions"],
        "operationId": "setSessionNetwork",
        "summary": "Change a session's outbound network policy",
        "description": "The fields given replace the session's, the others stay. A running session follows at once: new connections obey it, open ones to a destination it no longer allows are cut; a sleeping one gets it when it wakes. A grant on a plan without egress is 403.",
        "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/NetworkPolicy"}}}},
        "responses": {
          "200": {
            "description": "The session's policy now.",
            "headers": {
              "X-RateLimit-Limit": {"$ref": "#/components/headers/X-RateLimit-Limit"},
              "X-RateLimit-Remaining": {"$ref": "#/components/headers/X-RateLimit-Remaining"},
              "X-RateLimit-Reset": {"$ref": "#/components/headers/X-RateLimit-Reset"}
            },
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/NetworkPolicy"}}}
          },
          "400": {"$ref": "#/components/responses/InvalidRequest"},
          "401": {"$ref": "#/components/responses/Unauthorized"},
          "403": {"$ref": "#/components/responses/Forbidden"},
          "404": {"$ref": "#/components/responses/SessionNotFound"},
          "429": {"$ref": "#/components/responses/RateLimited"},
          "500": {"$ref": "#/components/responses/InternalError"},
          "503": {"$ref": "#/components/responses/Unavailable"}
        }
      },
      "patch": {
        "tags": ["sessions"],
        "operationId": "patchSessionNetwork",
        "summary": "Change a session's outbound network policy (same as POST)",
        "description": "The fields given replace the session's, the others stay. A running session follows at once: new connections obey it, open ones to a destination it no longer allows are cut; a sleeping one gets it when it wakes. A grant on a plan without egress is 403.",
        "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/NetworkPolicy"}}}},
        "responses": {
          "200": {
            "description": "The session's policy now.",
            "headers": {
              "X-RateLimit-Limit": {"$ref": "#/components/headers/X-RateLimit-Limit"},
              "X-RateLimit-Remaining": {"$ref": "#/components/headers/X-RateLimit-Remaining"},
              "X-RateLimit-Reset": {"$ref": "#/components/headers/X-RateLimit-Reset"}
            },
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/NetworkPolicy"}}}
          },
          "400": {"$ref": "#/components/responses/InvalidRequest"},
          "401": {"$ref": "#/components/responses/Unauthorized"},
          "403": {"$ref": "#/components/responses/Forbidden"},
          "404": {"$ref": "#/components/responses/SessionNotFound"},
          "429": {"$ref": "#/components/responses/RateLimited"},
          "500": {"$ref": "#/components/responses/InternalError"},
          "503": {"$ref": "#/components/responses/Unavailable"}
        }
      }
    },
    "/sessions/{id}": {
      "parameters": [{"$ref": "#/components/parameters/SessionIdPath"}],
      "get": {
        "tags": ["sessions"],
        "operationId": "getSession",
        "summary": "Read a session (does not wake it)",
        "responses": {
          "200": {
            "description": "The session.",
            "headers": {
              "X-RateLimit-Limit": {"$ref": "#/components/headers/X-RateLimit-Limit"},
              "X-RateLimit-Remaining": {"$ref": "#/components/headers/X-RateLimit-Remaining"},
              "X-RateLimit-Reset": {"$ref": "#/components/headers/X-RateLimit-Reset"}
            },
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/SessionInfo"}}}
          },
          "401": {"$ref": "#/components/responses/Unauthorized"},
          "404": {"$ref": "#/components/responses/SessionNotFound"},
          "429": {"$ref": "#/components/responses/RateLimited"},
          "500": {"$ref": "#/components/responses/InternalError"}
        }
      },
      "delete": {
        "tags": ["sessions"],
        "operationId": "deleteSession",
        "summary": "Delete a session: processes killed, files and snapshot destroyed",
        "responses": {
          "200": {
            "description": "Deleted; the id answers 404 from now on.",
            "headers": {
              "X-RateLimit-Limit": {"$ref": "#/components/headers/X-RateLimit-Limit"},
              "X-RateLimit-Remaining": {"$ref": "#/components/headers/X-RateLimit-Remaining"},
              "X-RateLimit-Reset": {"$ref": "#/components/headers/X-RateLimit-Reset"}
            },
            "content": {"application/json": {"schema": {
              "type": "object",
              "required": ["deleted", "sessionId"],
              "properties": {"deleted": {"const": true}, "sessionId": {"$ref": "#/components/schemas/SessionId"}}
            }}}
          },
          "401": {"$ref": "#/components/responses/Unauthorized"},
          "404": {"$ref": "#/components/responses/SessionNotFound"},
          "429": {"$ref": "#/components/responses/RateLimited"},
          "500": {"$ref": "#/components/responses/InternalError"}
        }
      }
    },
    "/execute": {
      "post": {
        "tags": ["executions"],
        "operationId": "execute",
        "summary": "Run code in a session (both dialects)",
        "description": "Exactly one of code and command. With stream:true the answer is text/event-stream: `stdout`/`stderr` events with {data}, then one `exit` event with the result object, or an `error` event with {code, message}; `: ping` comments every 15 s. A body with session_id instead of sessionId is the InstaVM dialect's (InstaVMExecuteRequest: the program text in `language`, run by the session's persistent interpreter of that language; errors in the InstaVM shapes, 422 for validation); one with both is 400.",
        "parameters": [{"$ref": "#/components/parameters/IdempotencyKey"}],
        "requestBody": {
          "required": true,
          "content": {"application/json": {"schema": {"oneOf": [{"$ref": "#/components/schemas/ExecuteRequest"}, {"$ref": "#/components/schemas/InstaVMExecuteRequest"}]}}}
        },
        "responses": {
          "200": {
            "description": "The execution ended (its own failure, a timeout included, is a result). InstaVMExecuteResult for a body with session_id.",
            "headers": {
              "X-RateLimit-Limit": {"$ref": "#/components/headers/X-RateLimit-Limit"},
              "X-RateLimit-Remaining": {"$ref": "#/components/headers/X-RateLimit-Remaining"},
              "X-RateLimit-Reset": {"$ref": "#/components/headers/X-RateLimit-Reset"},
              "Idempotent-Replayed": {"$ref": "#/components/headers/Idempotent-Replayed"}
            },
            "content": {
              "application/json": {"schema": {"oneOf": [{"$ref": "#/components/schemas/ExecuteResult"}, {"$ref": "#/components/schemas/InstaVMExecuteResult"}]}},
              "text/event-stream": {"schema": {"type": "string", "description": "Server-Sent Events (stream:true)."}}
            }
          },
          "400": {"$ref": "#/components/responses/InvalidRequest"},
          "401": {"$ref": "#/components/responses/Unauthorized"},
          "404": {"$ref": "#/components/responses/SessionNotFound"},
          "409": {"$ref": "#/components/responses/Conflict"},
          "413": {"$ref": "#/components/responses/PayloadTooLarge"},
          "422": {"$ref": "#/components/responses/IdempotencyKeyReused"},
          "429": {"$ref": "#/components/responses/RateLimited"},
          "500": {"$ref": "#/components/responses/InternalError"},
          "503": {"$ref": "#/components/responses/Unavailable"},
          "507": {
            "description": "memory_limit_exceeded (the partial result is in error.details) or disk_full.",
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
          }
        }
      }
    },
    "/execution/processes": {
      "get": {
        "tags": ["executions"],
        "operationId": "listProcesses",
        "summary": "The session's processes (PID 1 left out)",
        "parameters": [{"$ref": "#/components/parameters/SessionIdQuery"}],
        "responses": {
          "200": {
            "description": "Processes, with pids as seen inside the session.",
            "headers": {
              "X-RateLimit-Limit": {"$ref": "#/components/headers/X-RateLimit-Limit"},
              "X-RateLimit-Remaining": {"$ref": "#/components/headers/X-RateLimit-Remaining"},
              "X-RateLimit-Reset": {"$ref": "#/components/headers/X-RateLimit-Reset"}
            },
            "content": {"application/json": {"schema": {
              "type": "object",
              "required": ["processes"],
              "properties": {"processes": {"type": "array", "items": {"$ref": "#/components/schemas/Process"}}}
            }}}
          },
          "400": {"$ref": "#/components/responses/InvalidRequest"},
          "401": {"$ref": "#/components/responses/Unauthorized"},
          "404": {"$ref": "#/components/responses/SessionNotFound"},
          "429": {"$ref": "#/components/responses/RateLimited"},
          "500": {"$ref": "#/components/responses/InternalError"}
        }
      }
    },
    "/execution/kill": {
      "post": {
        "tags": ["executions"],
        "operationId": "killProcesses",
        "summary": "Kill one process, or every user process of the session",
        "requestBody": {
          "required": true,
          "content": {"application/json": {"schema": {
            "type": "object",
            "required": ["sessionId"],
            "properties": {
              "sessionId": {"$ref": "#/components/schemas/SessionId"},
              "pid": {"type": "integer", "minimum": 1, "description": "Without it, every user process."}
            }
          }}}
        },
        "responses": {
          "200": {
            "description": "What was killed.",
            "headers": {
              "X-RateLimit-Limit": {"$ref": "#/components/headers/X-RateLimit-Limit"},
              "X-RateLimit-Remaining": {"$ref": "#/components/headers/X-RateLimit-Remaining"},
              "X-RateLimit-Reset": {"$ref": "#/components/headers/X-RateLimit-Reset"}
            },
            "content": {"application/json": {"schema": {
              "type": "object",
              "required": ["killed", "pids"],
              "properties": {"killed": {"type": "integer", "minimum": 0, "description": "How many processes were killed."}, "pids": {"type": "array", "items": {"type": "integer"}}}
            }}}
          },
          "400": {"$ref": "#/components/responses/InvalidRequest"},
          "401": {"$ref": "#/components/responses/Unauthorized"},
          "404": {"description": "session_not_found or process_not_found.", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}},
          "429": {"$ref": "#/components/responses/RateLimited"},
          "500": {"$ref": "#/components/responses/InternalError"}
        }
      }
    },
    "/files/write": {
      "post": {
        "tags": ["files"],
        "operationId": "writeFile",
        "summary": "Write a file (parent directories are created)",
        "parameters": [{"$ref": "#/components/parameters/IdempotencyKey"}],
        "requestBody": {
          "required": true,
          "content": {"application/json": {"schema": {
            "type": "object",
            "required": ["sessionId", "path", "content"],
            "properties": {
              "sessionId": {"$ref": "#/components/schemas/SessionId"},
              "path": {"$ref": "#/components/schemas/WorkspacePath"},
              "content": {"type": "string"},
              "encoding": {"$ref": "#/components/schemas/Encoding"}
            }
          }}}
        },
        "responses": {
          "200": {
            "description": "Written.",
            "headers": {
              "X-RateLimit-Limit": {"$ref": "#/components/headers/X-RateLimit-Limit"},
              "X-RateLimit-Remaining": {"$ref": "#/components/headers/X-RateLimit-Remaining"},
              "X-RateLimit-Reset": {"$ref": "#/components/headers/X-RateLimit-Reset"},
              "Idempotent-Replayed": {"$ref": "#/components/headers/Idempotent-Replayed"}
            },
            "content": {"application/json": {"schema": {
              "type": "object",
              "required": ["path", "size"],
              "properties": {"path": {"type": "string"}, "size": {"type": "integer", "minimum": 0}}
            }}}
          },
          "400": {"$ref": "#/components/responses/InvalidRequest"},
          "401": {"$ref": "#/components/responses/Unauthorized"},
          "404": {"$ref": "#/components/responses/SessionNotFound"},
          "409": {"$ref": "#/components/responses/Conflict"},
          "413": {"$ref": "#/components/responses/PayloadTooLarge"},
          "422": {"$ref": "#/components/responses/IdempotencyKeyReused"},
          "429": {"$ref": "#/components/responses/RateLimited"},
          "500": {"$ref": "#/components/responses/InternalError"},
          "507": {"$ref": "#/components/responses/DiskFull"}
        }
      }
    },
    "/files/read": {
      "get": {
        "tags": ["files"],
        "operationId": "readFile",
        "summary": "Read a file (base64 when its bytes are not UTF-8)",
        "parameters": [
          {"$ref": "#/components/parameters/SessionIdQuery"},
          {"name": "path", "in": "query", "required": true, "schema": {"$ref": "#/components/schemas/WorkspacePath"}}
        ],
        "responses": {
          "200": {
            "description": "The file.",
            "headers": {
              "X-RateLimit-Limit": {"$ref": "#/components/headers/X-RateLimit-Limit"},
              "X-RateLimit-Remaining": {"$ref": "#/components/headers/X-RateLimit-Remaining"},
              "X-RateLimit-Reset": {"$ref": "#/components/headers/X-RateLimit-Reset"}
            },
            "content": {"application/json": {"schema": {
              "type": "object",
              "required": ["path", "content", "size", "encoding"],
              "properties": {
                "path": {"type": "string"},
                "content": {"type": "string"},
                "size": {"type": "integer", "minimum": 0},
                "encoding": {"$ref": "#/components/schemas/Encoding"}
              }
            }}}
          },
          "400": {"$ref": "#/components/responses/InvalidRequest"},
          "401": {"$ref": "#/components/responses/Unauthorized"},
          "404": {"$ref": "#/components/responses/FileNotFound"},
          "413": {"$ref": "#/components/responses/PayloadTooLarge"},
          "429": {"$ref": "#/components/responses/RateLimited"},
          "500": {"$ref": "#/components/responses/InternalError"}
        }
      }
    },
    "/files/list": {
      "get": {
        "tags": ["files"],
        "operationId": "listFiles",
        "summary": "List a directory of the workspace",
        "parameters": [
          {"$ref": "#/components/parameters/SessionIdQuery"},
          {"name": "path", "in": "query", "schema": {"$ref": "#/components/schemas/WorkspacePath"}, "description": "Default: /workspace itself."},
          {"name": "recursive", "in": "query", "schema": {"type": "boolean", "default": false}},
          {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100}},
          {"name": "offset", "in": "query", "schema": {"type": "integer", "minimum": 0, "default": 0}, "description": "Entries passed over (after cursor, when one is given)."},
          {"name": "cursor", "in": "query", "schema": {"type": "string"}, "description": "A previous page's nextCursor: the page that follows it."}
        ],
        "responses": {
          "200": {
            "description": "A page of entries (sorted by the bytes of their paths), the number of all, and the cursor of the next page (null after the last).",
            "headers": {
              "X-RateLimit-Limit": {"$ref": "#/components/headers/X-RateLimit-Limit"},
              "X-RateLimit-Remaining": {"$ref": "#/components/headers/X-RateLimit-Remaining"},
              "X-RateLimit-Reset": {"$ref": "#/components/headers/X-RateLimit-Reset"}
            },
            "content": {"application/json": {"schema": {
              "type": "object",
              "required": ["files", "total", "nextCursor"],
              "properties": {
                "files": {"type": "array", "items": {"$ref": "#/components/schemas/FileEntry"}},
                "total": {"type": "integer", "minimum": 0},
                "nextCursor": {"type": ["string", "null"]}
              }
            }}}
          },
          "400": {"$ref": "#/components/responses/InvalidRequest"},
          "401": {"$ref": "#/components/responses/Unauthorized"},
          "404": {"$ref": "#/components/responses/FileNotFound"},
          "429": {"$ref": "#/components/responses/RateLimited"},
          "500": {"$ref": "#/components/responses/InternalError"}
        }
      }
    },
    "/files/delete": {
      "post": {
        "tags": ["files"],
        "operationId": "deleteFile",
        "summary": "Delete a file or directory",
        "requestBody": {
          "required": true,
          "content": {"application/json": {"schema": {
            "type": "object",
            "required": ["sessionId", "path"],
            "properties": {
              "sessionId": {"$ref": "#/components/schemas/SessionId"},
              "path": {"$ref": "#/components/schemas/WorkspacePath"},
              "recursive": {"type": "boolean", "default": false, "description": "Needed for a non-empty directory (else 409)."}
            }
          }}}
        },
        "responses": {
          "200": {
            "description": "Deleted.",
            "headers": {
              "X-RateLimit-Limit": {"$ref": "#/components/headers/X-RateLimit-Limit"},
              "X-RateLimit-Remaining": {"$ref": "#/components/headers/X-RateLimit-Remaining"},
              "X-RateLimit-Reset": {"$ref": "#/components/headers/X-RateLimit-Reset"}
            },
            "content": {"application/json": {"schema": {
              "type": "object",
              "required": ["deleted", "path"],
              "properties": {"deleted": {"const": true}, "path": {"type": "string"}}
            }}}
          },
          "400": {"$ref": "#/components/responses/InvalidRequest"},
          "401": {"$ref": "#/components/responses/Unauthorized"},
          "404": {"$ref": "#/components/responses/FileNotFound"},
          "409": {"$ref": "#/components/responses/Conflict"},
          "429": {"$ref": "#/components/responses/RateLimited"},
          "500": {"$ref": "#/components/responses/InternalError"}
        }
      }
    },
    "/healthz": {
      "get": {
        "tags": ["operations"],
        "operationId": "health",
        "summary": "Liveness, version and cgroup mode",
        "security": [],
        "responses": {
          "200": {
            "description": "Serving.",
            "content": {"application/json": {"schema": {
              "type": "object",
              "required": ["status", "version", "cgroup"],
              "properties": {
                "status": {"const": "ok"},
                "version": {"type": "string"},
                "cgroup": {"enum": ["v1", "v2"]}
              }
            }}}
          }
        }
      }
    },
    "/metrics": {
      "get": {
        "tags": ["operations"],
        "operationId": "metrics",
        "summary": "Prometheus metrics",
        "description": "Families: bunker_sessions (gauge), bunker_sessions_created_total, bunker_rate_limited_total, bunker_idempotent_replays_total, bunker_http_requests_total{method,route,status}, bunker_http_request_duration_seconds{method,route} (histogram), bunker_execution_duration_seconds (histogram), bunker_sandbox_start_duration_seconds (histogram), bunker_egress_bytes_total{direction=\"out\"|\"in\"} (bytes sessions' outbound networks carried since the daemon started, every session's together; each session's own is in its usage).",
        "security": [],
        "responses": {
          "200": {
            "description": "Prometheus text format 0.0.4.",
            "content": {"text/plain": {"schema": {"type": "string"}}}
          }
        }
      }
    },
    "/v1/cluster/nodes": {
      "get": {
        "tags": ["operations"],
        "operationId": "clusterNodes",
        "summary": "The nodes of the cluster (operators)",
        "description": "Every node registered in the store, with its lease and load: what placement reads. For operators: the token of --operator-token-file as a Bearer; an API key (a tenant's) is 403, no Authorization 401. The same figures are in /metrics as bunker_cluster_node_up, bunker_cluster_node_sessions and bunker_cluster_node_free_memory_mb, labelled by node.",
        "security": [{"operatorToken": []}],
        "responses": {
          "200": {
            "description": "This node's name and every node's.",
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ClusterNodes"}}}
          },
          "401": {"$ref": "#/components/responses/Unauthorized"},
          "403": {"$ref": "#/components/responses/Forbidden"}
        }
      }
    },
    "/v1/sessions/session": {
      "post": {
        "tags": ["instavm"],
        "operationId": "instavmCreateSession",
        "summary": "Create a session (InstaVM)",
        "description": "The key may be the body's api_key (what the SDK sends, with no header), X-API-Key or Authorization: Bearer. The VM is spawned lazily, at the first execute, upload, download or app-url, or at once when env is given; vm_lifetime_seconds counts from the spawn. memory_mb and vcpu_count above the plan's ceilings are clamped to them. Every field out of range is one entry of the 422.",
        "security": [{"bearerAuth": []}, {"apiKeyHeader": []}, {"apiKeyBody": []}],
        "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/InstaVMCreateRequest"}}}},
        "parameters": [],
        "responses": {
          "200": {
            "description": "Done.",
            "headers": {
              "X-RateLimit-Limit": {"$ref": "#/components/headers/X-RateLimit-Limit"},
              "X-RateLimit-Remaining": {"$ref": "#/components/headers/X-RateLimit-Remaining"},
              "X-RateLimit-Reset": {"$ref": "#/components/headers/X-RateLimit-Reset"}
            },
            "content": {"application/json": {"schema": {"type": "object", "required": ["session_id"], "properties": {"session_id": {"$ref": "#/components/schemas/InstaVMSessionId"}}}}}
          },
          "401": {"$ref": "#/components/responses/DetailError"},
          "422": {"$ref": "#/components/responses/ValidationError"},
          "429": {"$ref": "#/components/responses/DetailError"},
          "500": {"$ref": "#/components/responses/DetailError"},
          "503": {"$ref": "#/components/responses/DetailError"}
        }
      }
    },
    "/v1/sessions/session/{session_id}": {
      "get": {
        "tags": ["instavm"],
        "operationId": "instavmSessionInfo",
        "summary": "A session's applied limits, metadata and VM",
        "description": "Does not wake the session and does not spawn a VM.",
        "security": [{"bearerAuth": []}, {"apiKeyHeader": []}],
        "parameters": [{"name": "session_id", "in": "path", "required": true, "schema": {"$ref": "#/components/schemas/InstaVMSessionId"}}],
        "responses": {
          "200": {
            "description": "Done.",
            "headers": {
              "X-RateLimit-Limit": {"$ref": "#/components/headers/X-RateLimit-Limit"},
              "X-RateLimit-Remaining": {"$ref": "#/components/headers/X-RateLimit-Remaining"},
              "X-RateLimit-Reset": {"$ref": "#/components/headers/X-RateLimit-Reset"}
            },
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/InstaVMSessionInfo"}}}
          },
          "401": {"$ref": "#/components/responses/DetailError"},
          "404": {"$ref": "#/components/responses/DetailError"},
          "422": {"$ref": "#/components/responses/ValidationError"},
          "429": {"$ref": "#/components/responses/DetailError"},
          "500": {"$ref": "#/components/responses/DetailError"}
        }
      }
    },
    "/v1/sessions/status/{session_id}": {
      "get": {
        "tags": ["instavm"],
        "operationId": "instavmSessionStatus",
        "summary": "A session's VM status",
        "description": "vm_status is active while the session has a VM that was not killed and whose lifetime has not ended (idle and deep sleep are invisible: any request wakes it), terminated after kill or lifetime end, null before the first spawn (vm_alive false, the other vm fields null). state is the finer lifecycle state.",
        "security": [{"bearerAuth": []}, {"apiKeyHeader": []}],
        "parameters": [{"name": "session_id", "in": "path", "required": true, "schema": {"$ref": "#/components/schemas/InstaVMSessionId"}}],
        "responses": {
          "200": {
            "description": "Done.",
            "headers": {
              "X-RateLimit-Limit": {"$ref": "#/components/headers/X-RateLimit-Limit"},
              "X-RateLimit-Remaining": {"$ref": "#/components/headers/X-RateLimit-Remaining"},
              "X-RateLimit-Reset": {"$ref": "#/components/headers/X-RateLimit-Reset"}
            },
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/InstaVMStatus"}}}
          },
          "401": {"$ref": "#/components/responses/DetailError"},
          "404": {"$ref": "#/components/responses/DetailError"},
          "422": {"$ref": "#/components/responses/ValidationError"},
          "429": {"$ref": "#/components/responses/DetailError"},
          "500": {"$ref": "#/components/responses/DetailError"}
        }
      }
    },
    "/v1/sessions/usage/{session_id}": {
      "get": {
        "tags": ["instavm"],
        "operationId": "instavmSessionUsage",
        "summary": "A session's usage",
        "description": "The SDK sends no credentials here: without a key the session's UUID is the capability (a ses_ id is not taken without a key); with a key, ownership is checked.",
        "security": [{}, {"bearerAuth": []}, {"apiKeyHeader": []}],
        "parameters": [{"name": "session_id", "in": "path", "required": true, "schema": {"$ref": "#/components/schemas/InstaVMSessionId"}}],
        "responses": {
          "200": {
            "description": "Done.",
            "headers": {
              "X-RateLimit-Limit": {"$ref": "#/components/headers/X-RateLimit-Limit"},
              "X-RateLimit-Remaining": {"$ref": "#/components/headers/X-RateLimit-Remaining"},
              "X-RateLimit-Reset": {"$ref": "#/components/headers/X-RateLimit-Reset"}
            },
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/InstaVMUsage"}}}
          },
          "401": {"$ref": "#/components/responses/DetailError"},
          "404": {"$ref": "#/components/responses/DetailError"},
          "422": {"$ref": "#/components/responses/ValidationError"},
          "429": {"$ref": "#/components/responses/DetailError"},
          "500": {"$ref": "#/components/responses/DetailError"}
        }
      }
    },
    "/v1/sessions/sandboxes": {
      "get": {
        "tags": ["instavm"],
        "operationId": "instavmSandboxes",
        "summary": "The caller's sessions that hold a VM",
        "description": "A bare array, newest first. metadata is a JSON object every listed session's metadata contains.",
        "security": [{"bearerAuth": []}, {"apiKeyHeader": []}],
        "parameters": [
          {"name": "metadata", "in": "query", "required": false, "schema": {"type": "string", "description": "A JSON object."}},
          {"name": "limit", "in": "query", "required": false, "schema": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100}}
        ],
        "responses": {
          "200": {
            "description": "Done.",
            "headers": {
              "X-RateLimit-Limit": {"$ref": "#/components/headers/X-RateLimit-Limit"},
              "X-RateLimit-Remaining": {"$ref": "#/components/headers/X-RateLimit-Remaining"},
              "X-RateLimit-Reset": {"$ref": "#/components/headers/X-RateLimit-Reset"}
            },
            "content": {"application/json": {"schema": {"type": "array", "items": {"$ref": "#/components/schemas/InstaVMSandbox"}}}}
          },
          "401": {"$ref": "#/components/responses/DetailError"},
          "422": {"$ref": "#/components/responses/ValidationError"},
          "429": {"$ref": "#/components/responses/DetailError"},
          "500": {"$ref": "#/components/responses/DetailError"}
        }
      }
    },
    "/execute_async": {
      "post": {
        "tags": ["instavm"],
        "operationId": "instavmExecuteAsync",
        "summary": "Run code in the background",
        "description": "The body of POST /execute (InstaVM). The task runs in a fresh interpreter of its language in the session (the persistent one stays the synchronous executions'), at most 8 at once per session; its result is kept an hour at least and survives a restart of the server (a task a restart interrupted is failed).",
        "security": [{"bearerAuth": []}, {"apiKeyHeader": []}],
        "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/InstaVMExecuteRequest"}}}},
        "parameters": [],
        "responses": {
          "200": {
            "description": "Done.",
            "headers": {
              "X-RateLimit-Limit": {"$ref": "#/components/headers/X-RateLimit-Limit"},
              "X-RateLimit-Remaining": {"$ref": "#/components/headers/X-RateLimit-Remaining"},
              "X-RateLimit-Reset": {"$ref": "#/components/headers/X-RateLimit-Reset"}
            },
            "content": {"application/json": {"schema": {"type": "object", "required": ["task_id"], "properties": {"task_id": {"type": "string"}}}}}
          },
          "401": {"$ref": "#/components/responses/DetailError"},
          "404": {"$ref": "#/components/responses/DetailError"},
          "422": {"$ref": "#/components/responses/ValidationError"},
          "429": {"$ref": "#/components/responses/DetailError"},
          "500": {"$ref": "#/components/responses/DetailError"},
          "503": {"$ref": "#/components/responses/DetailError"}
        }
      }
    },
    "/v1/executions/{task_id}": {
      "get": {
        "tags": ["instavm"],
        "operationId": "instavmExecution",
        "summary": "A background task's status and result",
        "description": "serialized_stdout and serialized_stderr are plain text, at most 1 MiB each.",
        "security": [{"bearerAuth": []}, {"apiKeyHeader": []}],
        "parameters": [{"name": "task_id", "in": "path", "required": true, "schema": {"type": "string"}}],
        "responses": {
          "200": {
            "description": "Done.",
            "headers": {
              "X-RateLimit-Limit": {"$ref": "#/components/headers/X-RateLimit-Limit"},
              "X-RateLimit-Remaining": {"$ref": "#/components/headers/X-RateLimit-Remaining"},
              "X-RateLimit-Reset": {"$ref": "#/components/headers/X-RateLimit-Reset"}
            },
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/InstaVMTask"}}}
          },
          "401": {"$ref": "#/components/responses/DetailError"},
          "404": {"$ref": "#/components/responses/DetailError"},
          "422": {"$ref": "#/components/responses/ValidationError"},
          "429": {"$ref": "#/components/responses/DetailError"},
          "500": {"$ref": "#/components/responses/DetailError"}
        }
      }
    },
    "/kill": {
      "post": {
        "tags": ["instavm"],
        "operationId": "instavmKill",
        "summary": "Kill a session's VM",
        "description": "The session stays: its next execute gets a fresh, empty VM. 400 for a malformed id, 403 for another key's session, 404 for no such session or no VM.",
        "security": [{"bearerAuth": []}, {"apiKeyHeader": []}],
        "requestBody": {"required": true, "content": {"application/json": {"schema": {"type": "object", "required": ["session_id"], "properties": {"session_id": {"$ref": "#/components/schemas/InstaVMSessionId"}}}}}},
        "parameters": [],
        "responses": {
          "200": {
            "description": "Done.",
            "headers": {
              "X-RateLimit-Limit": {"$ref": "#/components/headers/X-RateLimit-Limit"},
              "X-RateLimit-Remaining": {"$ref": "#/components/headers/X-RateLimit-Remaining"},
              "X-RateLimit-Reset": {"$ref": "#/components/headers/X-RateLimit-Reset"}
            },
            "content": {"application/json": {"schema": {"type": "object", "required": ["message", "vm_id"], "properties": {"message": {"type": "string"}, "vm_id": {"type": "string"}}}}}
          },
          "400": {"$ref": "#/components/responses/DetailError"},
          "401": {"$ref": "#/components/responses/DetailError"},
          "403": {"$ref": "#/components/responses/DetailError"},
          "404": {"$ref": "#/components/responses/DetailError"},
          "422": {"$ref": "#/components/responses/ValidationError"},
          "429": {"$ref": "#/components/responses/DetailError"},
          "500": {"$ref": "#/components/responses/DetailError"}
        }
      }
    },
    "/upload": {
      "post": {
        "tags": ["instavm"],
        "operationId": "instavmUpload",
        "summary": "Upload a file into a session",
        "description": "multipart/form-data with the text parts remote_path, session_id and recursive (true or false), and then the part file (its filename, the client's local path, is ignored). The text parts must come before the file part. The file is streamed into the session, never held whole in the server, and takes its name only once all of it came: a body refused half-way leaves the old file. An absolute remote_path is that path in the session's own file system (parents are created, the file belongs to the session's user); a relative one is under /workspace; /proc, /sys, /dev and the read-only image are 403. Over the plan's file size: 413.",
        "security": [{"bearerAuth": []}, {"apiKeyHeader": []}],
        "requestBody": {"required": true, "content": {"multipart/form-data": {"schema": {"$ref": "#/components/schemas/InstaVMUploadForm"}}}},
        "parameters": [],
        "responses": {
          "200": {
            "description": "Done.",
            "headers": {
              "X-RateLimit-Limit": {"$ref": "#/components/headers/X-RateLimit-Limit"},
              "X-RateLimit-Remaining": {"$ref": "#/components/headers/X-RateLimit-Remaining"},
              "X-RateLimit-Reset": {"$ref": "#/components/headers/X-RateLimit-Reset"}
            },
            "content": {"application/json": {"schema": {"type": "object", "required": ["status", "remote_path", "size"], "properties": {"status": {"const": "success"}, "remote_path": {"type": "string"}, "size": {"type": "integer"}}}}}
          },
          "401": {"$ref": "#/components/responses/DetailError"},
          "403": {"$ref": "#/components/responses/DetailError"},
          "404": {"$ref": "#/components/responses/DetailError"},
          "413": {"$ref": "#/components/responses/DetailError"},
          "422": {"$ref": "#/components/responses/ValidationError"},
          "429": {"$ref": "#/components/responses/DetailError"},
          "500": {"$ref": "#/components/responses/DetailError"},
          "503": {"$ref": "#/components/responses/DetailError"}
        }
      }
    },
    "/download": {
      "post": {
        "tags": ["instavm"],
        "operationId": "instavmDownload",
        "summary": "Download a file from a session",
        "description": "A form (application/x-www-form-urlencoded, what the SDK sends) or JSON with filename and session_id. Paths as for /upload. content is standard padded base64.",
        "security": [{"bearerAuth": []}, {"apiKeyHeader": []}],
        "requestBody": {"required": true, "content": {"application/x-www-form-urlencoded": {"schema": {"$ref": "#/components/schemas/InstaVMDownloadForm"}}, "application/json": {"schema": {"$ref": "#/components/schemas/InstaVMDownloadForm"}}}},
        "parameters": [],
        "responses": {
          "200": {
            "description": "Done.",
            "headers": {
              "X-RateLimit-Limit": {"$ref": "#/components/headers/X-RateLimit-Limit"},
              "X-RateLimit-Remaining": {"$ref": "#/components/headers/X-RateLimit-Remaining"},
              "X-RateLimit-Reset": {"$ref": "#/components/headers/X-RateLimit-Reset"}
            },
            "content": {"application/json": {"schema": {"type": "object", "required": ["status", "filename", "content", "size"], "properties": {"status": {"const": "success"}, "filename": {"type": "string"}, "content": {"type": "string", "contentEncoding": "base64"}, "size": {"type": "integer"}}}}}
          },
          "401": {"$ref": "#/components/responses/DetailError"},
          "403": {"$ref": "#/components/responses/DetailError"},
          "404": {"$ref": "#/components/responses/DetailError"},
          "413": {"$ref": "#/components/responses/DetailError"},
          "422": {"$ref": "#/components/responses/ValidationError"},
          "429": {"$ref": "#/components/responses/DetailError"},
          "500": {"$ref": "#/components/responses/DetailError"},
          "503": {"$ref": "#/components/responses/DetailError"}
        }
      }
    },
    "/v1/egress/session/{session_id}": {
      "get": {
        "tags": ["instavm"],
        "operationId": "instavmEgressGet",
        "summary": "A session's outbound network policy",
        "description": "Deny-all unless granted; bandwidth_mbps and max_connections are the plan's caps.",
        "security": [{"bearerAuth": []}, {"apiKeyHeader": []}],
        "parameters": [{"name": "session_id", "in": "path", "required": true, "schema": {"$ref": "#/components/schemas/InstaVMSessionId"}}],
        "responses": {
          "200": {
            "description": "Done.",
            "headers": {
              "X-RateLimit-Limit": {"$ref": "#/components/headers/X-RateLimit-Limit"},
              "X-RateLimit-Remaining": {"$ref": "#/components/headers/X-RateLimit-Remaining"},
              "X-RateLimit-Reset": {"$ref": "#/components/headers/X-RateLimit-Reset"}
            },
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/InstaVMEgress"}}}
          },
          "401": {"$ref": "#/components/responses/DetailError"},
          "404": {"$ref": "#/components/responses/DetailError"},
          "422": {"$ref": "#/components/responses/ValidationError"},
          "429": {"$ref": "#/components/responses/DetailError"},
          "500": {"$ref": "#/components/responses/DetailError"}
        }
      },
      "post": {
        "tags": ["instavm"],
        "operationId": "instavmEgressSet",
        "summary": "Set a session's outbound network policy",
        "description": "The fields given replace the session's, the others stay; a running VM follows at once (open connections to a destination no longer allowed are cut). A grant on a plan without egress is 403; a host that cannot give sessions a network answers 503.",
        "security": [{"bearerAuth": []}, {"apiKeyHeader": []}],
        "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/InstaVMEgress"}}}},
        "parameters": [{"name": "session_id", "in": "path", "required": true, "schema": {"$ref": "#/components/schemas/InstaVMSessionId"}}],
        "responses": {
          "200": {
            "description": "Done.",
            "headers": {
              "X-RateLimit-Limit": {"$ref": "#/components/headers/X-RateLimit-Limit"},
              "X-RateLimit-Remaining": {"$ref": "#/components/headers/X-RateLimit-Remaining"},
              "X-RateLimit-Reset": {"$ref": "#/components/headers/X-RateLimit-Reset"}
            },
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/InstaVMEgress"}}}
          },
          "401": {"$ref": "#/components/responses/DetailError"},
          "404": {"$ref": "#/components/responses/DetailError"},
          "422": {"$ref": "#/components/responses/ValidationError"},
          "429": {"$ref": "#/components/responses/DetailError"},
          "403": {"$ref": "#/components/responses/DetailError"},
          "500": {"$ref": "#/components/responses/DetailError"},
          "503": {"$ref": "#/components/responses/DetailError"}
        }
      }
    },
    "/v1/sessions/app-url/{session_id}": {
      "get": {
        "tags": ["instavm"],
        "operationId": "appUrl",
        "summary": "The URLs of a port of a session's web app (does not wake it)",
        "description": "`url` is the path proxy on this host: `/v1/app/{session_id}/{port}/...` is relayed to that port inside the session with the prefix cut from the path (and sent as X-Forwarded-Prefix). `direct_url` is the session's own host for that port, `vm-<20>-<port>.<preview domain>`. Both relay HTTP/1.1 (streamed both ways) and WebSocket, need no key (the URL is the capability) and wake a sleeping session.",
        "security": [{"bearerAuth": []}, {"apiKeyHeader": []}],
        "parameters": [
          {"name": "session_id", "in": "path", "required": true, "schema": {"$ref": "#/components/schemas/InstaVMSessionId"}},
          {"name": "port", "in": "query", "required": false, "schema": {"type": "integer", "minimum": 1, "maximum": 65535, "default": 8080}}
        ],
        "responses": {
          "200": {
            "description": "The URLs.",
            "headers": {
              "X-RateLimit-Limit": {"$ref": "#/components/headers/X-RateLimit-Limit"},
              "X-RateLimit-Remaining": {"$ref": "#/components/headers/X-RateLimit-Remaining"},
              "X-RateLimit-Reset": {"$ref": "#/components/headers/X-RateLimit-Reset"}
            },
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/AppUrl"}}}
          },
          "401": {"$ref": "#/components/responses/DetailError"},
          "404": {"$ref": "#/components/responses/DetailError"},
          "422": {"$ref": "#/components/responses/ValidationError"},
          "429": {"$ref": "#/components/responses/DetailError"},
          "500": {"$ref": "#/components/responses/DetailError"}
        }
      }
    },
    "/openapi.json": {
      "get": {
        "tags": ["operations"],
        "operationId": "openapi",
        "summary": "This document",
        "security": [],
        "responses": {
          "200": {
            "description": "OpenAPI 3.1.",
            "content": {"application/json": {"schema": {"type": "object"}}}
          }
        }
      }
    }
  },
  "components": {
    "securitySchemes": {
      "operatorToken": {"type": "http", "scheme": "bearer", "description": "The operators' token, read by bunkerd from --operator-token-file at start; not an API key."},
      "bearerAuth": {"type": "http", "scheme": "bearer", "description": "An API key made by `bunker keys create`."},
      "apiKeyHeader": {"type": "apiKey", "in": "header", "name": "X-API-Key", "description": "The same key, as the InstaVM dialect also takes it."},
      "apiKeyBody": {"type": "apiKey", "in": "header", "name": "api_key", "description": "Not a header: the api_key field of the JSON body of POST /v1/sessions/session, as InstaVM's SDK sends it (OpenAPI has no body location for a key)."}
    },
    "headers": {
      "X-RateLimit-Limit": {"description": "Requests per minute of the key's plan.", "schema": {"type": "integer"}},
      "X-RateLimit-Remaining": {"description": "Requests left in the current window.", "schema": {"type": "integer"}},
      "X-RateLimit-Reset": {"description": "When the window starts afresh, unix seconds.", "schema": {"type": "integer"}},
      "Retry-After": {"description": "Seconds to wait before trying again.", "schema": {"type": "integer"}},
      "Idempotent-Replayed": {"description": "Present (true) when the answer is the stored answer to an earlier request with the same Idempotency-Key.", "schema": {"const": "true"}}
    },
    "parameters": {
      "IdempotencyKey": {
        "name": "Idempotency-Key",
        "in": "header",
        "required": false,
        "description": "1..255 printable ASCII characters, scoped to the API key, remembered 24 hours. An answer over 1 MiB (or past the key's 64 MiB of kept answers) is remembered by its length only: the same request again is 409, never a second run. At most 10,000 keys per API key a day (429 past that).",
        "schema": {"type": "string", "minLength": 1, "maxLength": 255}
      },
      "SessionIdPath": {"name": "id", "in": "path", "required": true, "schema": {"$ref": "#/components/schemas/SessionId"}},
      "SessionIdQuery": {"name": "sessionId", "in": "query", "required": true, "schema": {"$ref": "#/components/schemas/SessionId"}}
    },
    "responses": {
      "DetailError": {"description": "An error of the InstaVM dialect: detail says what is wrong.", "content": {"application/json": {"schema": {"type": "object", "required": ["detail"], "properties": {"detail": {"type": "string"}}}}}},
      "ValidationError": {
        "description": "A field of the InstaVM dialect that is not valid: loc names it.",
        "content": {"application/json": {"schema": {"type": "object", "required": ["detail"], "properties": {"detail": {"type": "array", "items": {
          "type": "object",
          "required": ["loc", "msg", "type"],
          "properties": {"loc": {"type": "array", "items": {"anyOf": [{"type": "string"}, {"type": "integer"}]}}, "msg": {"type": "string"}, "type": {"type": "string"}}
        }}}}}}
      },
      "InvalidRequest": {"description": "invalid_request: error.details.field names the field at fault.", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}},
      "Unauthorized": {"description": "unauthorized: missing, unknown or revoked key (no X-RateLimit headers).", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}},
      "Forbidden": {"description": "forbidden: the plan does not allow it (resourceLimits on the free plan).", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}},
      "SessionNotFound": {"description": "session_not_found: missing, expired, deleted or another key's.", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}},
      "FileNotFound": {"description": "session_not_found or file_not_found.", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}},
      "Conflict": {"description": "conflict: the Idempotency-Key's first request is still running, or the operation contradicts the state (a non-empty directory without recursive).", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}},
      "PayloadTooLarge": {"description": "payload_too_large: the body is over the server's limit, or a file over the plan's.", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}},
      "IdempotencyKeyReused": {"description": "idempotency_key_reused: the Idempotency-Key was used with another request in the last 24 hours.", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}},
      "RateLimited": {
        "description": "rate_limit_exceeded: the key's requests per minute, or its concurrent-session cap.",
        "headers": {
          "Retry-After": {"$ref": "#/components/headers/Retry-After"},
          "X-RateLimit-Limit": {"$ref": "#/components/headers/X-RateLimit-Limit"},
          "X-RateLimit-Remaining": {"$ref": "#/components/headers/X-RateLimit-Remaining"},
          "X-RateLimit-Reset": {"$ref": "#/components/headers/X-RateLimit-Reset"}
        },
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
      },
      "DiskFull": {"description": "disk_full: the session's disk limit.", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}},
      "InternalError": {"description": "internal_error: the service failed (details in its log).", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}},
      "Unavailable": {"description": "unavailable: try again later.", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
    },
    "schemas": {
      "ClusterNode": {
        "type": "object",
        "required": ["name", "advertise", "alive", "self", "startedMs", "renewedMs", "leaseExpiresMs", "freeMemoryMb", "sessionsAwake", "sessionsOwned"],
        "properties": {
          "name": {"type": "string", "description": "Its --node."},
          "advertise": {"type": "string", "description": "The base URL its peers reach it at (--advertise)."},
          "alive": {"type": "boolean", "description": "Its lease (15 s, renewed every 5 s) has not lapsed."},
          "self": {"type": "boolean", "description": "The node that answered."},
          "startedMs": {"type": "integer"},
          "renewedMs": {"type": "integer"},
          "leaseExpiresMs": {"type": "integer"},
          "freeMemoryMb": {"type": "integer", "description": "Its host's MemAvailable at its last renewal."},
          "sessionsAwake": {"type": "integer", "description": "Sessions in its memory at its last renewal."},
          "sessionsOwned": {"type": "integer", "description": "Sessions it owns, not expired, counted now."}
        }
      },
      "ClusterNodes": {
        "type": "object",
        "required": ["node", "nodes"],
        "properties": {
          "node": {"type": "string", "description": "The name of the node that answered."},
          "nodes": {"type": "array", "items": {"$ref": "#/components/schemas/ClusterNode"}}
        }
      },
      "InstaVMSessionId": {"type": "string", "description": "The session's UUID (v4), or its ses_ id.", "anyOf": [{"format": "uuid"}, {"pattern": "^ses_[a-z0-9]{20}$"}]},
      "InstaVMCreateRequest": {
        "type": "object",
        "properties": {
          "api_key": {"type": "string"},
          "vm_lifetime_seconds": {"type": "integer", "minimum": 20, "maximum": 86400, "default": 300},
          "memory_mb": {"type": "integer", "minimum": 128, "maximum": 8192, "description": "Clamped to the plan's ceiling."},
          "vcpu_count": {"enum": [1, 2, 4, 6, 8], "default": 2, "description": "Clamped to the plan's ceiling (the applied cores may be a fraction)."},
          "metadata": {"$ref": "#/components/schemas/Metadata"},
          "env": {"type": "object", "maxProperties": 100, "additionalProperties": {"type": "string"}, "description": "Set for every execution of the session."}
        }
      },
      "InstaVMVmFields": {
        "type": "object",
        "required": ["vm_assigned", "vm_status", "vm_id", "vm_alive", "uptime_seconds", "expires_in_seconds"],
        "properties": {
          "vm_assigned": {"type": "boolean"},
          "vm_status": {"enum": ["active", "terminated", null]},
          "vm_id": {"type": ["string", "null"], "description": "vm-<the 20 characters of the session's ses_ id>"},
          "vm_alive": {"type": "boolean"},
          "uptime_seconds": {"type": ["number", "null"]},
          "expires_in_seconds": {"type": ["integer", "null"]}
        }
      },
      "InstaVMStatus": {
        "allOf": [{"$ref": "#/components/schemas/InstaVMVmFields"}, {
          "type": "object",
          "required": ["session_id", "exists", "created_at", "state"],
          "properties": {
            "session_id": {"type": "string"},
            "exists": {"const": true},
            "created_at": {"type": "string", "description": "ISO 8601 UTC, no zone."},
            "state": {"enum": ["active", "idle", "deep-sleep"]}
          }
        }]
      },
      "InstaVMSessionInfo": {
        "allOf": [{"$ref": "#/components/schemas/InstaVMVmFields"}, {
          "type": "object",
          "required": ["session_id", "created_at", "expires_at", "metadata", "state", "vm_lifetime_seconds", "memory_mb", "vcpu_count", "disk_mb"],
          "properties": {
            "session_id": {"type": "string"},
            "created_at": {"type": "string"},
            "expires_at": {"type": "string", "description": "When the session itself is deleted: the plan's maximum TTL from its creation."},
            "metadata": {"type": "object"},
            "state": {"enum": ["active", "idle", "deep-sleep"]},
            "vm_lifetime_seconds": {"type": "integer"},
            "memory_mb": {"type": "integer", "description": "Applied."},
            "vcpu_count": {"type": "number", "description": "Applied cores."},
            "requested_vcpu_count": {"type": "integer"},
            "disk_mb": {"type": "integer"}
          }
        }]
      },
      "InstaVMUsage": {
        "type": "object",
        "required": ["session_id", "cpu_time", "execution_count", "vm_runtime_seconds"],
        "properties": {
          "session_id": {"type": "string"},
          "cpu_time": {"type": "number", "description": "Seconds of CPU of every execution."},
          "execution_count": {"type": "integer"},
          "vm_runtime_seconds": {"type": "number", "description": "Seconds the session's VMs have lived."},
          "memory_mb": {"type": "integer"},
          "disk_mb": {"type": "integer"},
          "memory_used_bytes": {"type": "integer"},
          "files_count": {"type": "integer"},
          "network_tx_bytes": {"type": "integer", "minimum": 0, "description": "Bytes the session's outbound network carried out of it, over the session's whole life (sleeps included)."},
          "network_rx_bytes": {"type": "integer", "minimum": 0, "description": "Bytes the session's outbound network carried into it, over the session's whole life (sleeps included)."}
        }
      },
      "InstaVMSandbox": {
        "type": "object",
        "required": ["sandbox_id", "template_id", "name", "metadata", "started_at", "end_at", "status"],
        "properties": {
          "sandbox_id": {"type": "string", "description": "The vm_id."},
          "template_id": {"type": "string", "description": "snap<vcpu_count>"},
          "name": {"type": "string"},
          "metadata": {"type": "object"},
          "started_at": {"type": "string"},
          "end_at": {"type": "string"},
          "status": {"const": "active"},
          "session_id": {"type": "string"}
        }
      },
      "InstaVMExecuteRequest": {
        "type": "object",
        "required": ["session_id"],
        "anyOf": [{"required": ["command"]}, {"required": ["code"]}],
        "properties": {
          "session_id": {"$ref": "#/components/schemas/InstaVMSessionId"},
          "command": {"type": "string", "description": "The program text in language."},
          "code": {"type": "string", "description": "An alias of command."},
          "language": {"enum": ["python", "bash", "javascript", "typescript"], "default": "python"},
          "timeout": {"type": "integer", "minimum": 1, "maximum": 600, "default": 60, "description": "Seconds, clamped to the plan's maximum. The run is interrupted at timeout - 0.5 s from the request's arrival: exit_code 124, the output so far."}
        }
      },
      "InstaVMExecuteResult": {
        "type": "object",
        "required": ["stdout", "stderr", "exit_code", "execution_time", "cpu_time"],
        "properties": {
          "stdout": {"type": "string"},
          "stderr": {"type": "string"},
          "exit_code": {"type": "integer"},
          "execution_time": {"type": "number", "description": "Seconds."},
          "cpu_time": {"type": "number", "description": "Seconds."}
        }
      },
      "InstaVMTask": {
        "type": "object",
        "required": ["task_id", "is_complete", "status", "serialized_stdout", "serialized_stderr", "exit_code", "execution_time", "cpu_time", "created_at"],
        "properties": {
          "task_id": {"type": "string"},
          "is_complete": {"type": "boolean"},
          "status": {"enum": ["queued", "running", "completed", "failed", "timeout", "killed"]},
          "serialized_stdout": {"type": "string"},
          "serialized_stderr": {"type": "string"},
          "exit_code": {"type": ["integer", "null"]},
          "execution_time": {"type": ["number", "null"]},
          "cpu_time": {"type": ["number", "null"]},
          "created_at": {"type": "string"}
        }
      },
      "InstaVMUploadForm": {
        "type": "object",
        "required": ["remote_path", "session_id", "file"],
        "properties": {
          "remote_path": {"type": "string", "maxLength": 4096},
          "session_id": {"type": "string"},
          "recursive": {"enum": ["true", "false"]},
          "file": {"type": "string", "contentMediaType": "application/octet-stream"}
        }
      },
      "InstaVMDownloadForm": {
        "type": "object",
        "required": ["filename", "session_id"],
        "properties": {"filename": {"type": "string"}, "session_id": {"type": "string"}}
      },
      "InstaVMEgress": {
        "type": "object",
        "properties": {
          "session_id": {"type": "string"},
          "allow_package_managers": {"type": "boolean", "default": false},
          "allow_http": {"type": "boolean", "default": false},
          "allow_https": {"type": "boolean", "default": false},
          "allowed_domains": {"type": "array", "items": {"type": "string"}},
          "allowed_cidrs": {"type": "array", "items": {"type": "string"}},
          "bandwidth_mbps": {"type": "integer", "readOnly": true},
          "max_connections": {"type": "integer", "readOnly": true}
        }
      },
      "AppUrl": {
        "type": "object",
        "required": ["url", "direct_url", "vm_ip", "port", "vm_id", "session_id", "status", "expires_in_seconds"],
        "properties": {
          "url": {"type": "string", "format": "uri", "description": "The path proxy: <scheme>://<this host>/v1/app/{session_id}/{port}/"},
          "direct_url": {"type": "string", "format": "uri", "description": "<scheme>://vm-<20>-<port>.<preview domain>/"},
          "vm_ip": {"type": "null", "description": "Always null: a session has no address outside itself; use url or direct_url."},
          "port": {"type": "integer"},
          "vm_id": {"type": "string", "description": "vm-<the 20 characters of the session id>"},
          "session_id": {"$ref": "#/components/schemas/SessionId"},
          "status": {"enum": ["active", "idle", "deep-sleep"]},
          "expires_in_seconds": {"type": "integer", "minimum": 0}
        }
      },
      "Error": {
        "type": "object",
        "required": ["error"],
        "properties": {
          "error": {
            "type": "object",
            "required": ["code", "message", "details"],
            "properties": {
              "code": {"enum": ["invalid_request", "unauthorized", "forbidden", "session_not_found", "file_not_found", "process_not_found", "not_found", "conflict", "execution_timeout", "payload_too_large", "idempotency_key_reused", "rate_limit_exceeded", "memory_limit_exceeded", "disk_full", "internal_error", "unavailable"]},
              "message": {"type": "string"},
              "details": {"type": "object", "properties": {"field": {"type": "string"}}}
            }
          }
        }
      },
      "SessionId": {"type": "string", "pattern": "^ses_[a-z0-9]{20}$"},
      "Timestamp": {"type": "string", "format": "date-time", "description": "ISO 8601 UTC with Z."},
      "WorkspacePath": {"type": "string", "description": "Relative to /workspace; an absolute path must lie inside it. Leaving it (.., symlinks) is 400."},
      "Encoding": {"enum": ["utf8", "base64"], "default": "utf8"},
      "Metadata": {"type": "object", "description": "At most 16384 bytes of compact JSON."},
      "ResourceLimits": {
        "type": "object",
        "required": ["memory", "cpu", "timeout", "disk"],
        "properties": {
          "memory": {"type": "integer", "description": "MB (default 1024)."},
          "cpu": {"type": "number", "description": "Cores, fractions allowed (default 0.25)."},
          "timeout": {"type": "integer", "description": "Default execution timeout, seconds (default 30)."},
          "disk": {"type": "integer", "description": "MB (default 1024)."}
        }
      },
      "ResourceLimitsRequest": {
        "type": "object",
        "description": "Paid and enterprise plans only (403 on free); each value up to the plan's ceiling.",
        "properties": {
          "memory": {"type": "integer", "minimum": 64},
          "cpu": {"type": "number", "exclusiveMinimum": 0},
          "timeout": {"type": "integer", "minimum": 1},
          "disk": {"type": "integer", "minimum": 16}
        }
      },
      "CreateSessionRequest": {
        "type": "object",
        "properties": {
          "ttl": {"type": "integer", "minimum": 300, "default": 86400, "description": "Seconds, up to the plan's maximum (above it: 400)."},
          "metadata": {"$ref": "#/components/schemas/Metadata"},
          "resourceLimits": {"$ref": "#/components/schemas/ResourceLimitsRequest"},
          "network": {"$ref": "#/components/schemas/NetworkPolicy"}
        }
      },
      "NetworkPolicy": {
        "type": "object",
        "description": "Outbound network of a session (deny by default). The host itself, other sessions, link-local (169.254.169.254 among it), multicast and broadcast are refused whatever it says; private ranges (RFC 1918, CGNAT) open only through a CIDR that names them. IPv6 is off in sessions.",
        "properties": {
          "allowPackageManagers": {"type": "boolean", "default": false, "description": "registry.npmjs.org, pypi.org, files.pythonhosted.org, deb.debian.org, security.debian.org, by name."},
          "allowHttp": {"type": "boolean", "default": false, "description": "TCP 80 to any public address; every name resolves."},
          "allowHttps": {"type": "boolean", "default": false, "description": "TCP 443 to any public address; every name resolves."},
          "allowedDomains": {"type": "array", "maxItems": 64, "items": {"type": "string"}, "description": "example.com, or *.example.com for the names below it: the session's resolver answers them and opens every port of the addresses it answered, for their TTL (at least 60 s)."},
          "allowedCidrs": {"type": "array", "maxItems": 64, "items": {"type": "string"}, "description": "IPv4 addresses or CIDRs open on every port."},
          "bandwidthMbps": {"type": "integer", "readOnly": true, "description": "The plan's cap, each way."},
          "maxConnections": {"type": "integer", "readOnly": true, "description": "The plan's cap on connections open at once."}
        }
      },
      "SessionCreated": {
        "type": "object",
        "required": ["sessionId", "expiresAt", "previewUrl", "createdAt", "resourceLimits"],
        "properties": {
          "sessionId": {"$ref": "#/components/schemas/SessionId"},
          "createdAt": {"$ref": "#/components/schemas/Timestamp"},
          "expiresAt": {"$ref": "#/components/schemas/Timestamp"},
          "previewUrl": {"type": "string", "format": "uri"},
          "resourceLimits": {"$ref": "#/components/schemas/ResourceLimits"}
        }
      },
      "SessionInfo": {
        "type": "object",
        "required": ["sessionId", "createdAt", "expiresAt", "lastActive", "state", "filesCount", "activeProcesses", "metadata", "previewUrl", "resourceLimits"],
        "properties": {
          "sessionId": {"$ref": "#/components/schemas/SessionId"},
          "createdAt": {"$ref": "#/components/schemas/Timestamp"},
          "expiresAt": {"$ref": "#/components/schemas/Timestamp"},
          "lastActive": {"$ref": "#/components/schemas/Timestamp"},
          "state": {"enum": ["active", "idle", "deep-sleep"]},
          "filesCount": {"type": "integer", "minimum": 0},
          "activeProcesses": {"type": "integer", "minimum": 0},
          "metadata": {"$ref": "#/components/schemas/Metadata"},
          "previewUrl": {"type": "string", "format": "uri"},
          "resourceLimits": {"$ref": "#/components/schemas/ResourceLimits"},
          "network": {"allOf": [{"$ref": "#/components/schemas/NetworkPolicy"}, {
            "type": "object",
            "properties": {
              "bytesOut": {"type": "integer", "minimum": 0, "readOnly": true, "description": "Bytes its outbound network carried out of the session, over its whole life (sleeps included)."},
              "bytesIn": {"type": "integer", "minimum": 0, "readOnly": true, "description": "Bytes its outbound network carried into the session, over its whole life (sleeps included)."}
            }
          }]}
        }
      },
      "SessionList": {
        "type": "object",
        "required": ["sessions", "total"],
        "properties": {
          "sessions": {"type": "array", "items": {"$ref": "#/components/schemas/SessionInfo"}},
          "total": {"type": "integer", "minimum": 0}
        }
      },
      "ExecuteRequest": {
        "type": "object",
        "required": ["sessionId"],
        "oneOf": [{"required": ["code"]}, {"required": ["command"]}],
        "properties": {
          "sessionId": {"$ref": "#/components/schemas/SessionId"},
          "code": {"type": "string", "description": "JavaScript or TypeScript run by Bun."},
          "command": {"type": "string", "description": "Run by /bin/sh -c."},
          "files": {
            "type": "array",
            "description": "Written before the execution.",
            "items": {
              "type": "object",
              "required": ["path", "content"],
              "properties": {
                "path": {"$ref": "#/components/schemas/WorkspacePath"},
                "content": {"type": "string"},
                "encoding": {"$ref": "#/components/schemas/Encoding"}
              }
            }
          },
          "env": {"type": "object", "maxProperties": 100, "additionalProperties": {"type": "string"}},
          "timeout": {"type": "integer", "minimum": 1, "description": "Seconds, up to the plan's maximum (above it: 400)."},
          "workingDir": {"type": "string", "default": "/workspace"},
          "stream": {"type": "boolean", "default": false}
        }
      },
      "ExecuteResult": {
        "type": "object",
        "required": ["stdout", "stderr", "exitCode", "executionTime", "memoryUsed", "cpuTime", "timedOut", "filesWritten", "stdoutTruncated", "stderrTruncated"],
        "properties": {
          "stdout": {"type": "string"},
          "stderr": {"type": "string"},
          "exitCode": {"type": "integer", "description": "124 when the timeout fired."},
          "executionTime": {"type": "integer", "description": "Milliseconds."},
          "memoryUsed": {"type": "integer", "description": "Peak bytes."},
          "cpuTime": {"type": "integer", "description": "Milliseconds."},
          "timedOut": {"type": "boolean"},
          "filesWritten": {"type": "array", "items": {"type": "string"}, "description": "Workspace paths created or changed."},
          "stdoutTruncated": {"type": "boolean", "description": "Output past 10 MiB was cut."},
          "stderrTruncated": {"type": "boolean"}
        }
      },
      "Process": {
        "type": "object",
        "required": ["pid", "command", "startedAt"],
        "properties": {
          "pid": {"type": "integer"},
          "command": {"type": "string"},
          "startedAt": {"$ref": "#/components/schemas/Timestamp"}
        }
      },
      "FileEntry": {
        "type": "object",
        "required": ["path", "size", "modified", "type"],
        "properties": {
          "path": {"type": "string", "description": "Invalid UTF-8 shows as U+FFFD: see pathBase64."},
          "pathBase64": {"type": "string", "description": "The path's bytes in standard base64, present only when the name is not valid UTF-8 or holds a control character."},
          "size": {"type": "integer", "minimum": 0},
          "modified": {"$ref": "#/components/schemas/Timestamp"},
          "type": {"enum": ["file", "directory"]}
        }
      }
    }
  }
})openapi";
