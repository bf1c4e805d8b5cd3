// Validates custom resources against the schemas that @kubernetes-models generates from
// KEDA's and the Prometheus Operator's own Go API types: field types, enums, required
// fields. (Unknown fields are not reported: those schemas allow them.)
// Input: a JSON list of resources on stdin. Output: a JSON list, one entry per resource,
// {kind, name, error} with error null when valid. Exit 0 unless the input is unreadable.
import { ScaledObject } from "@kubernetes-models/keda/keda.sh/v1alpha1";
import { ServiceMonitor, PodMonitor } from "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1";

const models = {
  "keda.sh/v1alpha1/ScaledObject": ScaledObject,
  "monitoring.coreos.com/v1/ServiceMonitor": ServiceMonitor,
  "monitoring.coreos.com/v1/PodMonitor": PodMonitor,
};

const chunks = [];
for await (const chunk of process.stdin) chunks.push(chunk);
const resources = JSON.parse(Buffer.concat(chunks).toString("utf8"));
const results = resources.map((resource) => {
  const key = `${resource.apiVersion}/${resource.kind}`;
  const Model = models[key];
  const result = { kind: key, name: resource.metadata?.name ?? null, error: null };
  if (!Model) {
    result.error = `no schema for ${key}`;
    return result;
  }
  try {
    new Model(resource).validate();
  } catch (error) {
    result.error = String(error.message ?? error);
  }
  return result;
});
process.stdout.write(JSON.stringify(results));
