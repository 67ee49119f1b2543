"""Names a layer, block instance or input may not take, because torch uses them.

The torch builder makes every layer an attribute of its parent module, and torch
refuses a submodule named like an existing attribute (``forward``, ``training``,
``__class__``, ...). The analytic core refuses them too, so that every spec that
``netcalc check`` accepts can be built; it must not import torch to know them, hence
this list (tests/test_hostile.py compares it with ``dir(torch.nn.Module())``).
"""

from __future__ import annotations

#: attributes of a torch.nn.Module instance (torch 2.13)
TORCH_MODULE = frozenset("""
    T_destination __annotations__ __call__ __class__ __delattr__ __dict__ __dir__
    __doc__ __eq__ __format__ __ge__ __getattr__ __getattribute__ __getstate__ __gt__
    __hash__ __init__ __init_subclass__ __le__ __lt__ __module__ __ne__ __new__
    __reduce__ __reduce_ex__ __repr__ __setattr__ __setstate__ __sizeof__ __str__
    __subclasshook__ __weakref__ _apply _backward_hooks _backward_pre_hooks _buffers
    _call_impl _compiled_call_impl _forward_hooks _forward_hooks_always_called
    _forward_hooks_with_kwargs _forward_pre_hooks _forward_pre_hooks_with_kwargs
    _get_backward_hooks _get_backward_pre_hooks _get_name _is_full_backward_hook
    _load_from_state_dict _load_state_dict_post_hooks _load_state_dict_pre_hooks
    _maybe_warn_non_full_backward_hook _modules _named_members
    _non_persistent_buffers_set _parameters _register_load_state_dict_pre_hook
    _register_state_dict_hook _replicate_for_data_parallel _save_to_state_dict
    _slow_forward _state_dict_hooks _state_dict_pre_hooks _version _wrapped_call_impl
    add_module apply bfloat16 buffers call_super_init children compile cpu cuda double
    dump_patches eval extra_repr float forward get_buffer get_extra_state get_parameter
    get_submodule half ipu load_state_dict modules mtia named_buffers named_children
    named_modules named_parameters parameters register_backward_hook register_buffer
    register_forward_hook register_forward_pre_hook register_full_backward_hook
    register_full_backward_pre_hook register_load_state_dict_post_hook
    register_load_state_dict_pre_hook register_module register_parameter
    register_state_dict_post_hook register_state_dict_pre_hook requires_grad_
    set_extra_state set_submodule share_memory state_dict to to_empty train training
    type xpu zero_grad
""".split()) | {
    # transformers adds it to torch.nn.Module itself when its models load
    # (modeling_utils: setattr(torch.nn.Module, "smart_apply", ...)): a layer of that
    # name would then clash in any process that also imported a Hugging Face model
    "smart_apply",
}

#: what netcalc's block containers add (every level of the module tree)
NETCALC_CONTAINER = frozenset({"label"})

#: what netcalc's root module (NetcalcModule) adds besides
NETCALC_MODULE = NETCALC_CONTAINER | frozenset("""
    _bind _compile _fill_indices _fwd _graph _held _outputs _place _plan _region _run _steps
    _tie_and_freeze
    checkpoint input_names layer layer_names named_layers output_names return_dict
    spec_name
""".split())

#: plus ``self``: inputs are passed to ``forward(self, **inputs)`` by name
RESERVED = TORCH_MODULE | NETCALC_MODULE | {"self"}

#: names refused inside a block, whose layers are children of a container, not of the
#: root: Hugging Face's T5 names a child ``layer`` (``encoder.block.0.layer.0``)
BLOCK_RESERVED = TORCH_MODULE | NETCALC_CONTAINER
