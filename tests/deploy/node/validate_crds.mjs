// Validates ServiceMonitor and ScaledObject objects against their published schemas
// (@kubernetes-models/prometheus-operator, @kubernetes-models/keda: KEDA v2.19 CRDs).
// Reads a JSON array of objects on stdin; prints one JSON line per object; exits 1 on any error.
import { ScaledObject } from "@kubernetes-models/keda/keda.sh/v1alpha1/ScaledObject";
import { ServiceMonitor } from "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/ServiceMonitor";

const models = { ScaledObject, ServiceMonitor };
let input = "";
for await (const chunk of process.stdin) input += chunk;
let failed = false;
for (const obj of JSON.parse(input)) {
  const Model = models[obj.kind];
  let error = null;
  if (!Model) error = `no schema here for kind ${obj.kind}`;
  else if (obj.apiVersion !== Model.apiVersion) error = `apiVersion ${obj.apiVersion}, schema is ${Model.apiVersion}`;
  else {
    try {
      new Model(obj).validate();
    } catch (e) {
      error = e.message;
    }
  }
  failed ||= error !== null;
  console.log(JSON.stringify({ kind: obj.kind, name: obj.metadata?.name, error }));
}
process.exit(failed ? 1 : 0);
