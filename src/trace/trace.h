/*
 * trace: what a run's durable log means to the outside. Events become spans
 * (the OpenTelemetry GenAI semantic conventions) drawn in a terminal or
 * exported over OTLP/HTTP, and the store's runs and events become
 * Prometheus metrics. It reads the log (store) and the event table (engine);
 * it never changes a run and never stores a secret.
 */
#ifndef REIN_TRACE_H
#define REIN_TRACE_H

#include "base.h"
#include "engine.h"
#include "store.h"

#endif
