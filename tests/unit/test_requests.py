"""The client-agent protocol: one dataclass per action, checked on both sides."""

import json

import pytest

from onebox.agent.protocol import AgentError, ExitCode
from onebox.agent.requests import ACTIONS, DeployRequest, EnvSetRequest, parse
from onebox.errors import ExitCode as ClientExitCode

from .factories import deploy_request


def test_a_request_goes_through_json_unchanged():
    sent = deploy_request(env={"A": "1"}, probation=2.5)
    received = parse(json.loads(json.dumps(sent.to_json())))
    assert isinstance(received, DeployRequest) and received == sent


def test_every_action_the_agent_knows_has_its_own_request():
    from onebox.agent.main import ACTIONS as HANDLED

    assert set(HANDLED) == set(ACTIONS) - {"schedule"}  # (a timer's run: history only)


def test_each_action_names_a_function_that_takes_what_it_is_given():
    import importlib
    import inspect

    from onebox.agent.main import ACTIONS as HANDLED

    for action, (module, function, takes) in HANDLED.items():
        handler = getattr(importlib.import_module(f"onebox.agent.{module}"), function)
        parameters = inspect.signature(handler).parameters.values()
        required = [p for p in parameters if p.default is inspect.Parameter.empty]
        assert len(required) == takes, action


@pytest.mark.parametrize(
    "data, problem",
    [
        ({"action": "deploy-now"}, "unknown agent action"),
        ({"action": "env-set", "values": {}, "colour": "red"}, "unknown keys ['colour']"),
        ({"action": "env-set"}, "missing 1 required keyword-only argument: 'values'"),
    ],
)
def test_a_request_the_agent_does_not_know_is_refused_as_a_bug(data, problem):
    with pytest.raises(AgentError) as refused:
        parse(data)
    assert problem in refused.value.message and "internal error" in refused.value.message


def test_defaults_live_in_one_place():
    assert EnvSetRequest(values={}).backup is False
    assert ClientExitCode is ExitCode  # one definition of the exit codes
