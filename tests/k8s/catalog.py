"""The resource types the emulated cluster serves, and its discovery documents.

Built-in types are listed here with the names, kinds, scopes and short names a v1.32 cluster
reports; custom resources join the catalog when their CRD is created. Discovery documents are
built from the catalog, so `kubectl`, the Python client and Kopf all see the same API.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

VERBS = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]
SUBRESOURCE_VERBS = {"status": ["get", "patch", "update"], "scale": ["get", "patch", "update"],
                     "log": ["get"]}
SERVER_VERSION = {"major": "1", "minor": "32", "gitVersion": "v1.32.0", "platform": "linux/amd64",
                  "gitCommit": "emulated", "gitTreeState": "clean", "compiler": "gc",
                  "buildDate": "2024-12-11T00:00:00Z", "goVersion": "go1.23.3"}


@dataclass
class ResourceType:
    """One served resource: where it lives in the API and how it behaves."""

    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool = True
    short_names: list[str] = field(default_factory=list)
    categories: list[str] = field(default_factory=list)
    subresources: list[str] = field(default_factory=list)
    versions: list[str] = field(default_factory=list)
    schemas: dict[str, dict[str, Any]] = field(default_factory=dict)
    printer_columns: list[dict[str, Any]] = field(default_factory=list)
    custom: bool = False

    def __post_init__(self) -> None:
        if not self.versions:
            self.versions = [self.version]

    @property
    def key(self) -> tuple[str, str]:
        """Objects are stored once per group and plural, whichever version they came in at."""
        return (self.group, self.plural)

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    def api_version_for(self, version: str) -> str:
        return f"{self.group}/{version}" if self.group else version

    @property
    def singular(self) -> str:
        return self.kind.lower()

    @property
    def has_status(self) -> bool:
        return "status" in self.subresources

    @property
    def label(self) -> str:
        """The `plural.group` form used in error messages."""
        return f"{self.plural}.{self.group}" if self.group else self.plural


def _t(group: str, plural: str, kind: str, *, cluster: bool = False, short: tuple[str, ...] = (),
       sub: tuple[str, ...] = (), all_category: bool = False, version: str = "v1") -> ResourceType:
    return ResourceType(group=group, version=version, plural=plural, kind=kind,
                        namespaced=not cluster, short_names=list(short), subresources=list(sub),
                        categories=["all"] if all_category else [])


def builtin_types() -> list[ResourceType]:
    """The built-in types an operator and kubectl meet, as a v1.32 cluster serves them."""
    return [
        _t("", "namespaces", "Namespace", cluster=True, short=("ns",), sub=("status",)),
        _t("", "pods", "Pod", short=("po",), sub=("status", "log"), all_category=True),
        _t("", "services", "Service", short=("svc",), sub=("status",), all_category=True),
        _t("", "secrets", "Secret"),
        _t("", "configmaps", "ConfigMap", short=("cm",)),
        _t("", "events", "Event", short=("ev",)),
        _t("", "serviceaccounts", "ServiceAccount", short=("sa",)),
        _t("", "persistentvolumeclaims", "PersistentVolumeClaim", short=("pvc",), sub=("status",)),
        _t("", "endpoints", "Endpoints", short=("ep",)),
        _t("", "nodes", "Node", cluster=True, short=("no",), sub=("status",)),
        _t("", "resourcequotas", "ResourceQuota", short=("quota",), sub=("status",)),
        _t("", "limitranges", "LimitRange", short=("limits",)),
        _t("apps", "deployments", "Deployment", short=("deploy",), sub=("status", "scale"),
           all_category=True),
        _t("apps", "replicasets", "ReplicaSet", short=("rs",), sub=("status", "scale"),
           all_category=True),
        _t("apps", "statefulsets", "StatefulSet", short=("sts",), sub=("status", "scale"),
           all_category=True),
        _t("apps", "daemonsets", "DaemonSet", short=("ds",), sub=("status",), all_category=True),
        _t("batch", "jobs", "Job", sub=("status",), all_category=True),
        _t("batch", "cronjobs", "CronJob", short=("cj",), sub=("status",), all_category=True),
        _t("events.k8s.io", "events", "Event", short=("ev",)),
        _t("apiextensions.k8s.io", "customresourcedefinitions", "CustomResourceDefinition",
           cluster=True, short=("crd", "crds"), sub=("status",)),
        _t("networking.k8s.io", "networkpolicies", "NetworkPolicy", short=("netpol",)),
        _t("networking.k8s.io", "ingresses", "Ingress", short=("ing",), sub=("status",)),
        _t("rbac.authorization.k8s.io", "roles", "Role"),
        _t("rbac.authorization.k8s.io", "rolebindings", "RoleBinding"),
        _t("rbac.authorization.k8s.io", "clusterroles", "ClusterRole", cluster=True),
        _t("rbac.authorization.k8s.io", "clusterrolebindings", "ClusterRoleBinding", cluster=True),
        _t("coordination.k8s.io", "leases", "Lease"),
        _t("policy", "poddisruptionbudgets", "PodDisruptionBudget", short=("pdb",),
           sub=("status",)),
        _t("node.k8s.io", "runtimeclasses", "RuntimeClass", cluster=True),
        _t("scheduling.k8s.io", "priorityclasses", "PriorityClass", cluster=True, short=("pc",)),
    ]


def type_from_crd(crd: dict[str, Any]) -> ResourceType:
    """The resource type a CRD declares (its storage version is the one objects are kept at)."""
    spec = crd.get("spec") or {}
    names = spec.get("names") or {}
    served = [v for v in spec.get("versions") or [] if v.get("served", True)]
    storage: dict[str, Any] = next((v for v in served if v.get("storage")),
                                   served[0] if served else {"name": "v1"})
    return ResourceType(
        group=spec.get("group", ""),
        version=storage["name"],
        versions=[storage["name"]] + [v["name"] for v in served if v is not storage],
        plural=names.get("plural", ""),
        kind=names.get("kind", ""),
        namespaced=spec.get("scope", "Namespaced") == "Namespaced",
        short_names=list(names.get("shortNames") or []),
        categories=list(names.get("categories") or []),
        subresources=sorted((storage.get("subresources") or {}).keys()),
        schemas={v["name"]: (v.get("schema") or {}).get("openAPIV3Schema") or {} for v in served},
        printer_columns=list(storage.get("additionalPrinterColumns") or []),
        custom=True,
    )


def crd_problems(crd: dict[str, Any]) -> list[str]:
    """What makes a CRD invalid, in the apiserver's words (empty if it is fine)."""
    spec = crd.get("spec") or {}
    names = spec.get("names") or {}
    problems = []
    for key in ("plural", "kind"):
        if not names.get(key):
            problems.append(f"spec.names.{key}: Required value")
    if not spec.get("group"):
        problems.append("spec.group: Required value")
    expected = f"{names.get('plural', '')}.{spec.get('group', '')}"
    if (crd.get("metadata") or {}).get("name") != expected:
        problems.append(f"metadata.name: Invalid value: must be <plural>.<group> ({expected})")
    versions = spec.get("versions") or []
    if not versions:
        problems.append("spec.versions: Required value")
    if sum(1 for v in versions if v.get("storage")) != 1:
        problems.append("spec.versions: Invalid value: must have exactly one version marked as "
                        "storage version")
    if spec.get("scope") not in ("Namespaced", "Cluster"):
        problems.append("spec.scope: Unsupported value: must be Namespaced or Cluster")
    return problems


def resource_list(group: str, version: str, types: list[ResourceType]) -> dict[str, Any]:
    """The `APIResourceList` of one group version (subresources carry no short names)."""
    resources: list[dict[str, Any]] = []
    for rtype in types:
        resources.append({
            "name": rtype.plural, "singularName": rtype.singular, "namespaced": rtype.namespaced,
            "kind": rtype.kind, "verbs": VERBS, "shortNames": rtype.short_names,
            "categories": rtype.categories,
        })
        for sub in rtype.subresources:
            resources.append({
                "name": f"{rtype.plural}/{sub}", "singularName": "", "namespaced": rtype.namespaced,
                "kind": "Scale" if sub == "scale" else rtype.kind,
                "verbs": SUBRESOURCE_VERBS.get(sub, ["get"]),
            })
    return {"kind": "APIResourceList", "apiVersion": "v1",
            "groupVersion": f"{group}/{version}" if group else version, "resources": resources}


def group_document(group: str, types: list[ResourceType]) -> dict[str, Any]:
    """The `APIGroup` entry of a group, its storage version preferred."""
    versions: list[str] = []
    for rtype in types:
        for version in rtype.versions:
            if version not in versions:
                versions.append(version)
    preferred = types[0].version
    return {
        "kind": "APIGroup", "apiVersion": "v1", "name": group,
        "versions": [{"groupVersion": f"{group}/{v}", "version": v} for v in versions],
        "preferredVersion": {"groupVersion": f"{group}/{preferred}", "version": preferred},
    }
