"""RBAC rules as the API server reads them: does a rule set allow a call, and which grants go
unused by a list of calls."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from tests.k8s.http_api import ApiCall

Rule = Mapping[str, Any]


@dataclass(frozen=True)
class Grant:
    """One (apiGroup, resource, verb) a rule grants, in a namespace or cluster-wide (None)."""

    group: str
    resource: str
    verb: str
    namespace: str | None


def _matches(values: list[str], value: str) -> bool:
    return "*" in values or value in values


def rule_allows(rule: Rule, call: ApiCall) -> bool:
    if call.name is not None and rule.get("resourceNames") and call.name not in rule[
            "resourceNames"]:
        return False
    return (_matches(rule.get("apiGroups") or [], call.group)
            and _matches(rule.get("resources") or [], call.rbac_resource)
            and _matches(rule.get("verbs") or [], call.verb))


@dataclass
class Authorizer:
    """The rules bound to one ServiceAccount: ClusterRoles (everywhere) and Roles (by namespace)."""

    cluster_rules: list[Rule]
    namespace_rules: dict[str, list[Rule]]

    @classmethod
    def from_manifests(cls, manifests: Iterable[Mapping[str, Any]]) -> Authorizer:
        manifests = list(manifests)
        bound_cluster_roles = {m["roleRef"]["name"] for m in manifests
                               if m["kind"] == "ClusterRoleBinding"}
        bound_roles = {(m["metadata"]["namespace"], m["roleRef"]["name"]) for m in manifests
                       if m["kind"] == "RoleBinding" and m["roleRef"]["kind"] == "Role"}
        cluster_rules = [rule for m in manifests if m["kind"] == "ClusterRole"
                         and m["metadata"]["name"] in bound_cluster_roles for rule in m["rules"]]
        namespace_rules: dict[str, list[Rule]] = {}
        for m in manifests:
            key = (m["metadata"].get("namespace"), m["metadata"]["name"])
            if m["kind"] == "Role" and key in bound_roles:
                namespace_rules.setdefault(key[0], []).extend(m["rules"])
        return cls(cluster_rules, namespace_rules)

    def allows(self, call: ApiCall) -> bool:
        rules = list(self.cluster_rules)
        if call.namespace is not None:
            rules += self.namespace_rules.get(call.namespace, [])
        return any(rule_allows(rule, call) for rule in rules)

    def grants(self) -> set[Grant]:
        scoped = [(None, rule) for rule in self.cluster_rules] + [
            (ns, rule) for ns, rules in self.namespace_rules.items() for rule in rules]
        return {Grant(group, resource, verb, ns)
                for ns, rule in scoped
                for group in rule["apiGroups"]
                for resource in rule["resources"]
                for verb in rule["verbs"]}


def used_by(grant: Grant, calls: Iterable[ApiCall]) -> bool:
    """Whether some call needed this grant (a cluster-wide grant is used by a call anywhere)."""
    return any(call.group == grant.group and call.rbac_resource == grant.resource
               and call.verb == grant.verb
               and (grant.namespace is None or call.namespace == grant.namespace)
               for call in calls)
