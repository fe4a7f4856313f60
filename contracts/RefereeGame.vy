# pragma version ~=0.4.3
# pragma experimental-codegen
# pragma optimize codesize
"""
@title RefereeGame
@notice The level-2/3 dispute over one disputed transition of a portable job (docs/referee.md, "On
        chain: the game"), played to a ruling: the host of `Bisection.vy` and `TensorDescent.vy`.
        Its own host (the Disputes contract, named once by `wire`) opens a game: the DEFENDER (the
        worker) asserts the state root s_b reached from the agreed state root s_a after n optimizer
        steps, n read from s_a's header (its steps to the next segment boundary); the CHALLENGER
        disputes it.
        1. STEPS: a step bisection over the per-step state roots (c_0 = s_a, c_n = s_b) pins step t:
           state root r_t agreed, r_{t+1} disputed (`advance` reads the pinned game).
        2. RECORD: the defender opens the agreed state's header against r_t (the skeleton root S and
           length L of the step record: `post_record`).
        3. OPS: an operation bisection over L + 1 intervals (c_0 = the empty record tree P_{-1},
           c_{j+1} = P_j, c_{L+1} = r_{t+1}) pins index j: c_j agreed, c_{j+1} disputed. For j < L
           (entry j: P_{j-1} agreed, P_j disputed):
        4. ENTRY: the defender reveals entry j (`reveal_entry`): its skeleton leaf at j under S, and
           P_{j-1} -> P_j filling slot j with the entry leaf (skeleton leaf and output roots).
        5. OUTPUT: the challenger names the output it disputes (`dispute_output`): a TensorDescent
           over that output root pins one chunk the defender reveals.
        6. ELEMENT: the challenger names one element of that chunk (`dispute_element`).
        7. PROOF: the defender proves the input values the element's rule reads (`prove_element`):
           each input a state tensor of r_t or an output of an entry j' < j under P_{j-1}, then the
           run holding the value under that tensor root. The contract recomputes the element with the
           element rules (`ElementReferee.vy`) and rules: the defender is wrong iff the recomputed bits
           differ from its revealed element (NaN as a class).
        For j = L (the link: P_{L-1} agreed, r_{t+1} disputed):
        4'. REVEAL: the defender reveals every leaf of r_{t+1} (`reveal_state`, logged for the
           challenger); they must build r_{t+1}.
        5'. LEAF: the challenger names the leaf it disputes (`dispute_leaf`).
        6'. LINK: the defender proves that leaf is what the state map (leaf L of S) makes of the agreed
           tensor (`prove_link`), or for the header leaf (0) that r_{t+1}'s header is what one step
           makes of r_t's (`prove_header_link`), both checked by `StateLink.vy`: proven, the defender
           is right.
        Every stage has a clock of `move_seconds`: the party that owes a host move and misses it loses
        (`timeout`); a sub-game's own `timeout` decides it, and `advance` carries its result here.
@dev Which outputs the host can check, and for one element which rule, parameters and input runs
     decide it, are the host rules (`HostRules.vy`, `lib/host_rules.vy`, then the further rules
     contracts, e.g. `RowRules.vy`); this contract proves the runs (binary32, bool, int64 or binary64, under r_t,
     P_{j-1} or a constant's root the plan carries from the skeleton; r_t's header for its seed and
     step) and rules. A disputed value without a host check (a kernel or shape no rules contract
     covers, an input from the batch, a larger state) ends the game
     ESCALATED (level 2: the arbiter judges it; `ruling_of` says undecided and escalated), so an
     honest defender never times out for want of a proof.
     The only external calls go to the contracts fixed at deployment: opening sub-games and
     reading their outcomes (Bisection, TensorDescent) and pure views (the rules contracts,
     ElementReferee, StateLink). A sub-game id is written after its `open_game` returns it; every
     entry point holds the reentrancy lock.
"""

from .lib import commitments
from .lib import element_rules
from .lib import fold_rules
from .lib import host_rules
from .lib import state_link


interface Bisection:
    def open_game(
        defender: address, challenger: address, c_0: bytes32, c_n: bytes32, n: uint256, arity: uint256, move_seconds: uint256
    ) -> uint256: nonpayable
    def outcome_of(game_id: uint256) -> (uint8, uint256, bytes32, bytes32): view


interface TensorDescent:
    def open_game(
        defender: address,
        challenger: address,
        tensor_root: bytes32,
        code: uint256,
        dims: DynArray[uint256, 8],
        levels: uint256,
        move_seconds: uint256,
    ) -> uint256: nonpayable
    def outcome_of(game_id: uint256) -> (uint8, uint256, uint256, bytes32): view


# ElementReferee.vy, and ClipReferee.vy for the clipping rules (the same `element`)
interface ElementReferee:
    def element(rule: uint256, params: DynArray[uint256, 16], values: DynArray[uint256, 1_024]) -> uint256: view
    def CLIP() -> address: view


interface HostRules:
    def output_of(
        skeleton: Bytes[host_rules.MAX_SKELETON], output: uint256
    ) -> (uint256, bool, uint256, DynArray[uint256, commitments.MAX_NDIM]): pure
    def plan(
        skeleton: Bytes[host_rules.MAX_SKELETON],
        output: uint256,
        element: uint256,
        hints: DynArray[uint256, commitments.MAX_NDIM],
    ) -> host_rules.Plan: pure


interface StateLink:
    def state_root(leaves: DynArray[bytes32, state_link.MAX_LINK_LEAVES]) -> bytes32: view
    def verify_link(claim: state_link.LinkClaim, proof: state_link.LinkProof) -> bool: view
    def verify_header_link(claim: state_link.LinkClaim, proof: state_link.HeaderLinkProof) -> bool: view


# Stages. STEPS, OPS and DESCENT run in a sub-game; RECORD, ENTRY and PROOF await the defender;
# OUTPUT and ELEMENT await the challenger.
STAGE_NONE: public(constant(uint8)) = 0
STAGE_STEPS: public(constant(uint8)) = 1
STAGE_RECORD: public(constant(uint8)) = 2
STAGE_OPS: public(constant(uint8)) = 3
STAGE_ENTRY: public(constant(uint8)) = 4
STAGE_OUTPUT: public(constant(uint8)) = 5
STAGE_DESCENT: public(constant(uint8)) = 6
STAGE_ELEMENT: public(constant(uint8)) = 7
STAGE_PROOF: public(constant(uint8)) = 8
STAGE_DECIDED: public(constant(uint8)) = 9
STAGE_ESCALATED: public(constant(uint8)) = 10
# The link P_{L-1} -> r_{t+1}: REVEAL and LINK await the defender, LEAF the challenger.
STAGE_REVEAL: public(constant(uint8)) = 11
STAGE_LEAF: public(constant(uint8)) = 12
STAGE_LINK: public(constant(uint8)) = 13

# Sub-game statuses (Bisection.vy and TensorDescent.vy share them).
SUB_PINNED: constant(uint8) = 3
SUB_DEFENDER_TIMED_OUT: constant(uint8) = 4
SUB_CHALLENGER_TIMED_OUT: constant(uint8) = 5
SUB_PADDING_WRONG: constant(uint8) = 6

# Record reference kinds (docs/referee.md, section 3).
REF_STATE: constant(uint256) = 1
REF_OUTPUT: constant(uint256) = 3
REF_HEADER: constant(uint256) = 4
REF_CONSTANT: constant(uint256) = 5
REF_SELF: constant(uint256) = 7  # an output of the pinned entry itself (e.g. a long fold's running values)

MAX_FOLD: constant(uint256) = 256  # values of one proven run (32 chunks)
# Where prove_element puts a read's values: appended, set aside (a zipped pair's first column), or
# interleaved with the ones set aside (its second).
SINK_APPEND: constant(uint256) = 0
SINK_ASIDE: constant(uint256) = 1
SINK_ZIP: constant(uint256) = 2
RULE_SETS: constant(uint256) = 6  # host rules contracts (RULES)
MAX_LONG_SKELETON: constant(uint256) = 65_536  # the longest skeleton a record holds (engine/portable/record.py)
MAX_MOVE_SECONDS: public(constant(uint256)) = 30 * 86_400
BINARY32_MAGNITUDE: constant(uint256) = 2_147_483_647  # 0x7fffffff
BINARY32_INF: constant(uint256) = 2_139_095_040  # 0x7f800000
BINARY32_BITS: constant(uint256) = 4_294_967_295  # 0xffffffff
BINARY64_MAGNITUDE: constant(uint256) = 9_223_372_036_854_775_807  # 0x7fffffffffffffff
BINARY64_INF: constant(uint256) = 9_218_868_437_227_405_312  # 0x7ff0000000000000


# The defender's proof of one input tensor of the pinned entry and of the values read from it.
struct InputProof:
    # STATE input: the tensor's name hash; OUTPUT input: the producing entry's skeleton leaf; SELF: zero
    leaf_key: bytes32
    # STATE: [tensor root]; OUTPUT: the producing entry's output roots; SELF: entry j's output roots
    roots: DynArray[bytes32, commitments.MAX_OUTPUTS]
    # the state path of the tensor leaf under r_t, or the record path of entry j' under P_{j-1} (SELF: none);
    # a record path is the longer (MAX_STATE_DEPTH <= MAX_RECORD_DEPTH)
    path: DynArray[bytes32, commitments.MAX_RECORD_DEPTH]
    # the source tensor's shape as committed (its root binds it; the reference reads a prefix of it)
    dims: DynArray[uint256, commitments.MAX_NDIM]
    # the aligned run of chunks holding the values read, and its path to the data root
    first: uint256
    chunks: DynArray[bytes32, commitments.MAX_RUN]
    run_path: DynArray[bytes32, commitments.MAX_TENSOR_DEPTH]


struct Game:
    defender: address
    challenger: address
    stage: uint8
    deadline: uint256
    leaf_count: uint256
    sub_game: uint256
    step: uint256
    state_root: bytes32
    skeleton_root: bytes32
    record_length: uint256
    entry: uint256
    previous_prefix: bytes32
    entry_leaf: bytes32
    skeleton_leaf: bytes32
    output: uint256
    output_size: uint256
    chunk_index: uint256
    chunk: bytes32
    element: uint256
    defender_wrong: bool
    # the disputed state root r_{t+1} the step bisection pinned, and the leaf of it disputed at the link
    next_root: bytes32
    link_leaf: uint256
    # which of RULES checks the disputed output (set at OUTPUT)
    rules: uint256
    # the disputed output's dtype code when it is not binary32 (bool, int64, binary64); zero for binary32,
    # so a binary32 game pays no storage write for it
    wide_code: uint256


BISECTION: public(immutable(address))
DESCENT: public(immutable(address))
REFEREE: public(immutable(address))
# ClipReferee.vy, read from REFEREE at deployment: clipping elements are asked of it directly (through
# REFEREE's forward they paid about 41,700 gas more)
CLIP: public(immutable(address))
LINK: public(immutable(address))
# the host rules contracts, asked in order (HostRules.vy first; a zero slot is skipped): the first that
# can check a disputed output plans its elements
RULES: public(immutable(address[RULE_SETS]))
ARITY: public(immutable(uint256))
LEVELS: public(immutable(uint256))
MOVE_SECONDS: public(immutable(uint256))
DEPLOYER: immutable(address)

# the one caller of open_game (the Disputes contract), named once by `wire`
host: public(address)
game_count: public(uint256)
games: public(HashMap[uint256, Game])


event GameOpened:
    game_id: indexed(uint256)
    defender: indexed(address)
    challenger: indexed(address)
    agreed_root: bytes32
    disputed_root: bytes32
    steps: uint256
    sub_game: uint256


event StageEntered:
    game_id: indexed(uint256)
    stage: uint8
    sub_game: uint256
    deadline: uint256


event StateRevealed:
    game_id: indexed(uint256)
    leaves: DynArray[bytes32, state_link.MAX_LINK_LEAVES]


event Ruled:
    game_id: indexed(uint256)
    defender_wrong: bool
    stage: uint8


@deploy
def __init__(
    bisection: address,
    descent: address,
    referee: address,
    link: address,
    rules: address[RULE_SETS],
    arity: uint256,
    levels: uint256,
    move_seconds: uint256,
):
    """
    @notice Deploy over the two games, the element referee and the link checks (the games must name
            this contract a host in their one `wire` call).
    @param bisection Bisection.vy.
    @param descent TensorDescent.vy.
    @param referee ElementReferee.vy (its CLIP, ClipReferee.vy, is read here once).
    @param link StateLink.vy.
    @param rules HostRules.vy, then further rules contracts of the same interface (zero: none).
    @param arity k of both bisections, 2 … 32.
    @param levels Tree levels per descent move, 1 … 5.
    @param move_seconds Every move's window, 1 … MAX_MOVE_SECONDS.
    """
    assert bisection != empty(address) and descent != empty(address), "referee: zero address"
    assert referee != empty(address) and link != empty(address), "referee: zero address"
    assert rules[0] != empty(address), "referee: zero address"
    assert arity >= 2 and arity <= 32, "referee: bad arity"
    assert levels >= 1 and levels <= 5, "referee: bad levels"
    assert move_seconds >= 1 and move_seconds <= MAX_MOVE_SECONDS, "referee: bad move window"
    BISECTION = bisection
    DESCENT = descent
    REFEREE = referee
    CLIP = staticcall ElementReferee(referee).CLIP()
    LINK = link
    RULES = rules
    ARITY = arity
    LEVELS = levels
    MOVE_SECONDS = move_seconds
    DEPLOYER = msg.sender


@external
@nonreentrant
def wire(host: address):
    """
    @notice Name the one contract that may open games (the Disputes contract). Deployer only, once.
    @param host The host (non-zero).
    """
    assert msg.sender == DEPLOYER, "referee: not deployer"
    assert self.host == empty(address), "referee: already wired"
    assert host != empty(address), "referee: zero host"
    self.host = host


@external
@nonreentrant
def open_game(
    defender: address,
    challenger: address,
    agreed_root: bytes32,
    disputed_root: bytes32,
    header: Bytes[commitments.HEADER_BYTES],
    header_path: DynArray[bytes32, commitments.MAX_STATE_DEPTH],
) -> uint256:
    """
    @notice The host opens a dispute: `challenger` disputes `disputed_root`, which `defender` asserts
            is the state root segment_steps optimizer steps after the agreed `agreed_root`. The agreed
            state's header, proven as its leaf 0, gives that step count n and the tree's leaf count.
            Opens the step bisection over c_0 = agreed_root … c_n = disputed_root.
    @dev The header path is checked with the depth of the header's own leaf count, and that cannot
         lie about the tree: the header leaf is keccak256(0x14 ‖ 156 bytes), every node keccak256(0x15
         ‖ left ‖ right) and every tensor leaf keccak256(0x13 ‖ …), so a path one level too short would
         make the header leaf equal to a 0x15 node of the true tree, and one too long would make a
         0x15 node equal to the true tree's 0x14 header leaf: both keccak collisions. So the proven
         header is the agreed state's own, and its leaf count gives the true depth (a count other than
         1 + tensors inside the same power of two is a malformed agreed state, which its party agreed
         to). The parties are checked distinct and non-zero by Bisection.
    @param defender The worker.
    @param challenger The party disputing.
    @param agreed_root s_a, the agreed state root (S, L, segment steps and leaf count in its header).
    @param disputed_root s_b, the asserted state root.
    @param header The agreed state's 156-byte header.
    @param header_path Its path (leaf 0) under agreed_root.
    @return The game id (ids start at 1).
    """
    assert msg.sender == self.host, "referee: not the host"
    fields: commitments.StateHeader = commitments._decode_header(header)
    leaf_count: uint256 = convert(fields.leaf_count, uint256)
    assert leaf_count >= 2, "referee: bad leaf count"
    assert commitments._verify_state_leaf(agreed_root, leaf_count, 0, commitments._header_leaf(header), header_path), "referee: header not under the agreed root"
    steps: uint256 = convert(fields.segment_steps, uint256)
    assert steps >= 1, "referee: no steps to the next boundary"
    game_id: uint256 = self.game_count + 1
    self.game_count = game_id
    self.games[game_id].defender = defender
    self.games[game_id].challenger = challenger
    self.games[game_id].leaf_count = leaf_count
    self.games[game_id].stage = STAGE_STEPS
    sub: uint256 = extcall Bisection(BISECTION).open_game(
        defender, challenger, agreed_root, disputed_root, steps, ARITY, MOVE_SECONDS
    )
    self.games[game_id].sub_game = sub
    log GameOpened(
        game_id=game_id,
        defender=defender,
        challenger=challenger,
        agreed_root=agreed_root,
        disputed_root=disputed_root,
        steps=steps,
        sub_game=sub,
    )
    return game_id


@internal
@view
def _bisection_rounds(length: uint256) -> uint256:
    """
    @notice The most rounds a Bisection of `length` intervals at arity ARITY can take: each round
            leaves a part of at most ceil(length / parts) intervals, parts = min(ARITY, length).
    @param length n (at most 2**64).
    @return The rounds until one interval is left.
    """
    rounds: uint256 = 0
    left: uint256 = length
    for _: uint256 in range(64):
        if left <= 1:
            break
        left = (left + ARITY - 1) // ARITY
        rounds += 1
    return rounds


@view
@external
def max_game_seconds() -> uint256:
    """
    @notice An upper bound on the seconds from `open_game` to a ruling or escalation, with every
            `advance` and `timeout` that anyone may call made as soon as it is allowed.
    @dev Every clocked move is due within MOVE_SECONDS of the move before it and its `timeout` is
         allowed one second after: at most MOVE_SECONDS + 1 per move. Moves: the step bisection over
         n <= 2**32 - 1 steps (segment_steps is a uint32), two per round; RECORD; the operation
         bisection over at most 2**MAX_RECORD_DEPTH + 1 intervals (L entries and the link), two per
         round; then the longer of the two endings: ENTRY, OUTPUT, a descent over a tensor of at most
         2**MAX_TENSOR_DEPTH chunks (two moves per ceil(depth / LEVELS) rounds and the reveal),
         ELEMENT and PROOF, or the link's state reveal, leaf and proof (three moves).
    @return The bound in seconds.
    """
    descent_rounds: uint256 = (commitments.MAX_TENSOR_DEPTH + LEVELS - 1) // LEVELS
    moves: uint256 = 2 * self._bisection_rounds(convert(max_value(uint32), uint256)) + 1
    moves += 2 * self._bisection_rounds((1 << commitments.MAX_RECORD_DEPTH) + 1)
    moves += max(2 + 2 * descent_rounds + 1 + 2, 3)
    return moves * (MOVE_SECONDS + 1)


@internal
def _reveal(
    game_id: uint256,
    skeleton_leaf: bytes32,
    skeleton_path: DynArray[bytes32, commitments.MAX_RECORD_DEPTH],
    out_roots: DynArray[bytes32, commitments.MAX_OUTPUTS],
    prefix_path: DynArray[bytes32, commitments.MAX_RECORD_DEPTH],
):
    """
    @notice Check the defender's reveal of entry j (its skeleton leaf under S, its entry leaf filling
            slot j from P_{j-1} to P_j) and store it.
    @param game_id A game in ENTRY.
    @param skeleton_leaf The entry's skeleton leaf.
    @param skeleton_path Its path under S.
    @param out_roots The entry's output roots.
    @param prefix_path The path of slot j.
    """
    self._defender_move(game_id, STAGE_ENTRY)
    game: Game = self.games[game_id]
    width: uint256 = self._width(game.record_length)
    assert commitments._verify_record_leaf(game.skeleton_root, width, game.entry, skeleton_leaf, skeleton_path), "referee: skeleton not under S"
    assert len(out_roots) >= 1, "referee: no output"
    leaf: bytes32 = commitments._entry_leaf(game.entry, skeleton_leaf, out_roots)
    # game.entry_leaf holds P_j (the disputed prefix) until now
    assert commitments._verify_prefix_step(game.previous_prefix, game.entry_leaf, width, game.entry, leaf, prefix_path), "referee: entry does not fill slot j"
    self.games[game_id].entry_leaf = leaf
    self.games[game_id].skeleton_leaf = skeleton_leaf


@internal
def _rule(game_id: uint256, defender_wrong: bool):
    """
    @notice End the game with its ruling.
    @param game_id The game.
    @param defender_wrong Whether the defender lost.
    """
    stage: uint8 = self.games[game_id].stage
    self.games[game_id].stage = STAGE_DECIDED
    self.games[game_id].defender_wrong = defender_wrong
    self.games[game_id].deadline = 0
    log Ruled(game_id=game_id, defender_wrong=defender_wrong, stage=stage)


@internal
def _escalate(game_id: uint256):
    """
    @notice End the game undecided: a disputed value without a host check (level 2: the arbiter).
    @param game_id The game.
    """
    self.games[game_id].stage = STAGE_ESCALATED
    self.games[game_id].deadline = 0
    log StageEntered(game_id=game_id, stage=STAGE_ESCALATED, sub_game=self.games[game_id].sub_game, deadline=0)


@internal
def _enter(game_id: uint256, stage: uint8):
    """
    @notice Move to a host stage whose move is due within MOVE_SECONDS.
    @param game_id The game.
    @param stage The stage.
    """
    deadline: uint256 = block.timestamp + MOVE_SECONDS
    self.games[game_id].stage = stage
    self.games[game_id].deadline = deadline
    log StageEntered(game_id=game_id, stage=stage, sub_game=self.games[game_id].sub_game, deadline=deadline)


@internal
def _settle_timeout(game_id: uint256, status: uint8) -> bool:
    """
    @notice Carry a sub-game's timeout or padding verdict into the ruling.
    @param game_id The game.
    @param status The sub-game's status.
    @return Whether the game was decided.
    """
    if status == SUB_DEFENDER_TIMED_OUT or status == SUB_PADDING_WRONG:
        self._rule(game_id, True)
        return True
    if status == SUB_CHALLENGER_TIMED_OUT:
        self._rule(game_id, False)
        return True
    return False


@external
@nonreentrant
def advance(game_id: uint256):
    """
    @notice Carry an ended sub-game into this game: a pinned step bisection starts the defender's
            RECORD clock, a pinned operation bisection its ENTRY clock, a pinned descent the
            challenger's ELEMENT clock; a sub-game timeout (or a padding verdict) decides the game.
            Anyone may call.
    @param game_id A game in STEPS, OPS or DESCENT whose sub-game has ended.
    """
    stage: uint8 = self.games[game_id].stage
    sub: uint256 = self.games[game_id].sub_game
    if stage == STAGE_DESCENT:
        status: uint8 = 0
        height: uint256 = 0
        position: uint256 = 0
        chunk: bytes32 = empty(bytes32)
        status, height, position, chunk = staticcall TensorDescent(DESCENT).outcome_of(sub)
        if self._settle_timeout(game_id, status):
            return
        assert status == SUB_PINNED, "referee: sub-game still running"
        self.games[game_id].chunk_index = position
        self.games[game_id].chunk = chunk
        self._enter(game_id, STAGE_ELEMENT)
        return
    assert stage == STAGE_STEPS or stage == STAGE_OPS, "referee: no sub-game to advance"
    status: uint8 = 0
    index: uint256 = 0
    c_lo: bytes32 = empty(bytes32)
    c_hi: bytes32 = empty(bytes32)
    status, index, c_lo, c_hi = staticcall Bisection(BISECTION).outcome_of(sub)
    if self._settle_timeout(game_id, status):
        return
    assert status == SUB_PINNED, "referee: sub-game still running"
    if stage == STAGE_STEPS:
        self.games[game_id].step = index
        self.games[game_id].state_root = c_lo
        self.games[game_id].next_root = c_hi
        self._enter(game_id, STAGE_RECORD)
        return
    self.games[game_id].entry = index
    self.games[game_id].previous_prefix = c_lo
    if index < self.games[game_id].record_length:
        self.games[game_id].entry_leaf = c_hi  # P_j until the entry is revealed
        self._enter(game_id, STAGE_ENTRY)
    elif self.games[game_id].leaf_count <= state_link.MAX_LINK_LEAVES:
        self._enter(game_id, STAGE_REVEAL)  # P_{L-1} agreed, r_{t+1} disputed: the link
    else:
        self._escalate(game_id)


@internal
@view
def _defender_move(game_id: uint256, stage: uint8):
    """
    @notice Check it is the defender's move in `stage`, by the deadline.
    @param game_id The game.
    @param stage The stage the move belongs to.
    """
    assert self.games[game_id].stage == stage, "referee: not this stage"
    assert msg.sender == self.games[game_id].defender, "referee: not the defender"
    assert block.timestamp <= self.games[game_id].deadline, "referee: move too late"


@internal
@view
def _challenger_move(game_id: uint256, stage: uint8):
    """
    @notice Check it is the challenger's move in `stage`, by the deadline.
    @param game_id The game.
    @param stage The stage the move belongs to.
    """
    assert self.games[game_id].stage == stage, "referee: not this stage"
    assert msg.sender == self.games[game_id].challenger, "referee: not the challenger"
    assert block.timestamp <= self.games[game_id].deadline, "referee: move too late"


@internal
@pure
def _empty_record_root(width: uint256) -> bytes32:
    """
    @notice P_{-1}: the record tree of width W with every slot the zero word.
    @param width W.
    @return Z_log2(W).
    """
    depth: uint256 = commitments._record_width_depth(width)
    node: bytes32 = empty(bytes32)
    for _: uint256 in range(commitments.MAX_RECORD_DEPTH):
        if depth == 0:
            break
        node = keccak256(concat(b"\x18", node, node))
        depth -= 1
    return node


@internal
@pure
def _width(length: uint256) -> uint256:
    """
    @notice W: the next power of two >= L + 1 (the L skeleton leaves and the state map's leaf).
    @param length L.
    @return W.
    """
    width: uint256 = 1
    for _: uint256 in range(commitments.MAX_RECORD_DEPTH):
        if width > length:
            break
        width <<= 1
    assert width > length, "referee: record too long"
    return width


@external
@nonreentrant
def post_record(
    game_id: uint256,
    header: Bytes[commitments.HEADER_BYTES],
    header_path: DynArray[bytes32, commitments.MAX_STATE_DEPTH],
):
    """
    @notice The defender opens the agreed state's header (S and L of the step record); the operation
            bisection opens over the L + 1 intervals c_0 = P_{-1}, c_{j+1} = P_j, c_{L+1} = r_{t+1}
            (the defender posts the prefix roots as its interior values).
    @param game_id A game in RECORD.
    @param header The agreed state r_t's 156-byte header.
    @param header_path Its path (leaf 0) under r_t.
    """
    self._defender_move(game_id, STAGE_RECORD)
    game: Game = self.games[game_id]
    leaf: bytes32 = commitments._header_leaf(header)
    assert commitments._verify_state_leaf(game.state_root, game.leaf_count, 0, leaf, header_path), "referee: header not proven"
    fields: commitments.StateHeader = commitments._decode_header(header)
    length: uint256 = convert(fields.record_length, uint256)
    assert fields.skeleton_root != empty(bytes32) and length >= 2, "referee: no record bound"
    start: bytes32 = self._empty_record_root(self._width(length))
    self.games[game_id].skeleton_root = fields.skeleton_root
    self.games[game_id].record_length = length
    self.games[game_id].stage = STAGE_OPS
    self.games[game_id].deadline = 0
    sub: uint256 = extcall Bisection(BISECTION).open_game(
        game.defender, game.challenger, start, game.next_root, length + 1, ARITY, MOVE_SECONDS
    )
    self.games[game_id].sub_game = sub
    log StageEntered(game_id=game_id, stage=STAGE_OPS, sub_game=sub, deadline=0)


@external
@nonreentrant
def reveal_entry(
    game_id: uint256,
    skeleton: Bytes[host_rules.MAX_SKELETON],
    skeleton_path: DynArray[bytes32, commitments.MAX_RECORD_DEPTH],
    out_roots: DynArray[bytes32, commitments.MAX_OUTPUTS],
    prefix_path: DynArray[bytes32, commitments.MAX_RECORD_DEPTH],
):
    """
    @notice The defender reveals entry j: its skeleton (leaf j under S) and output roots, whose entry
            leaf fills slot j from the agreed P_{j-1} to the disputed P_j.
    @param game_id A game in ENTRY.
    @param skeleton Entry j's skeleton bytes (at most MAX_SKELETON: a longer one is revealed with
           `reveal_long_entry`).
    @param skeleton_path The skeleton leaf's path under S.
    @param out_roots Entry j's output roots (1 … 5, commitments.MAX_OUTPUTS).
    @param prefix_path The path of slot j (the same siblings under P_{j-1} and P_j).
    """
    self._reveal(game_id, commitments._skeleton_leaf(skeleton), skeleton_path, out_roots, prefix_path)
    self._enter(game_id, STAGE_OUTPUT)


@external
@nonreentrant
def reveal_long_entry(
    game_id: uint256,
    skeleton: Bytes[MAX_LONG_SKELETON],
    skeleton_path: DynArray[bytes32, commitments.MAX_RECORD_DEPTH],
    out_roots: DynArray[bytes32, commitments.MAX_OUTPUTS],
    prefix_path: DynArray[bytes32, commitments.MAX_RECORD_DEPTH],
):
    """
    @notice The defender reveals an entry j whose skeleton is longer than the rules contracts read
            (MAX_SKELETON bytes, e.g. a gradient clipping over every parameter): no rule can check
            it, so once it is proven to fill slot j the game ends ESCALATED, and an honest defender
            never loses for want of a move the contract cannot take.
    @param game_id A game in ENTRY.
    @param skeleton Entry j's skeleton bytes (MAX_SKELETON + 1 … MAX_LONG_SKELETON).
    @param skeleton_path The skeleton leaf's path under S.
    @param out_roots Entry j's output roots (1 … 5, commitments.MAX_OUTPUTS).
    @param prefix_path The path of slot j.
    """
    assert len(skeleton) > host_rules.MAX_SKELETON, "referee: not a long skeleton"
    # commitments._skeleton_leaf over the longer buffer
    self._reveal(game_id, keccak256(concat(b"\x16", skeleton)), skeleton_path, out_roots, prefix_path)
    self._escalate(game_id)


@external
@nonreentrant
def dispute_output(
    game_id: uint256, output: uint256, skeleton: Bytes[4_096], out_roots: DynArray[bytes32, commitments.MAX_OUTPUTS]
):
    """
    @notice The challenger names the output of entry j it disputes; a descent over its root opens.
            An output no rules contract can check ends the game ESCALATED instead; a revealed entry
            whose output roots are not the skeleton's outputs (too few, too many, or a zero root
            named) ends it with the defender wrong.
    @param game_id A game in OUTPUT.
    @param output The output's number.
    @param skeleton Entry j's skeleton (as revealed).
    @param out_roots Entry j's output roots (as revealed).
    """
    self._challenger_move(game_id, STAGE_OUTPUT)
    game: Game = self.games[game_id]
    leaf: bytes32 = commitments._entry_leaf(game.entry, commitments._skeleton_leaf(skeleton), out_roots)
    assert leaf == game.entry_leaf, "referee: not the revealed entry"
    count: uint256 = 0
    checkable: bool = False
    code: uint256 = 0
    dims: DynArray[uint256, commitments.MAX_NDIM] = []
    chosen: uint256 = 0
    for i: uint256 in range(RULE_SETS):
        if RULES[i] == empty(address):
            continue
        count, checkable, code, dims = staticcall HostRules(RULES[i]).output_of(skeleton, output)
        chosen = i
        if checkable:
            break
    assert output < max(count, len(out_roots)), "referee: no such output"
    if len(out_roots) != count or out_roots[output] == empty(bytes32):
        # the revealed entry is not one the skeleton describes (an output left out or added, or a zero
        # root, which no tensor has and no descent opens on): the defender's record is wrong
        self._rule(game_id, True)
        return
    if not checkable:
        self._escalate(game_id)
        return
    self.games[game_id].rules = chosen
    if code != commitments.DTYPE_FLOAT32:
        self.games[game_id].wide_code = code
    self.games[game_id].output = output
    self.games[game_id].output_size = commitments._element_count(dims)
    self.games[game_id].stage = STAGE_DESCENT
    self.games[game_id].deadline = 0
    sub: uint256 = extcall TensorDescent(DESCENT).open_game(
        game.defender, game.challenger, out_roots[output], code, dims, LEVELS, MOVE_SECONDS
    )
    self.games[game_id].sub_game = sub
    log StageEntered(game_id=game_id, stage=STAGE_DESCENT, sub_game=sub, deadline=0)


@external
@nonreentrant
def dispute_element(game_id: uint256, element: uint256):
    """
    @notice The challenger names the element of the revealed chunk it disputes.
    @param game_id A game in ELEMENT.
    @param element Its place in the chunk (binary32: 0 … 7; bool: 0 … 31); the element must lie inside
           the tensor.
    """
    self._challenger_move(game_id, STAGE_ELEMENT)
    per: uint256 = self._per_chunk(self._output_code(self.games[game_id].wide_code))
    assert element < per, "referee: element outside the chunk"
    index: uint256 = per * self.games[game_id].chunk_index + element
    assert index < self.games[game_id].output_size, "referee: element outside the output"
    self.games[game_id].element = element
    self._enter(game_id, STAGE_PROOF)


@internal
@pure
def _per_chunk(code: uint256) -> uint256:
    """
    @notice Elements of a 32-byte chunk of a dtype.
    @param code A dtype code.
    @return 8 (binary32), 4 (int64, binary64) or 32 (bool).
    """
    return 32 // commitments._element_size(code)


@internal
@pure
def _output_code(wide_code: uint256) -> uint256:
    """
    @notice The disputed output's dtype code.
    @param wide_code The game's `wide_code`.
    @return The dtype code (DTYPE_FLOAT32 where `wide_code` is zero).
    """
    if wide_code == 0:
        return commitments.DTYPE_FLOAT32
    return wide_code


@internal
@view
def _header_values(game: Game, proof: InputProof, cursor: bool) -> uint256[2]:
    """
    @notice Fields of the agreed state r_t's 156-byte header proven as leaf 0 under r_t (as
            `open_game` proves the agreed root's header): seed, step, cursor epoch, cursor position.
    @param game The game.
    @param proof `chunks`: the header in five words, zero-padded; `path`: its path under r_t.
    @param cursor Whether the read is of the cursor (a read from field 2, batch_index's) rather than
           the seed and step (dropout_keep's).
    @return [seed, step] or [cursor epoch, cursor position].
    """
    assert len(proof.chunks) == 5, "referee: header not under the agreed state"
    words: Bytes[160] = concat(proof.chunks[0], proof.chunks[1], proof.chunks[2], proof.chunks[3], proof.chunks[4])
    header: Bytes[commitments.HEADER_BYTES] = slice(words, 0, commitments.HEADER_BYTES)
    # leaf 0 under r_t at the depth of r_t's leaf count, as `_input_root` proves a state tensor (inline: an
    # InputProof's path is longer than `commitments._verify_state_leaf` takes)
    valid: bool = len(proof.path) == commitments._depth(game.leaf_count)
    assert valid and commitments._walk(commitments._header_leaf(header), 0, proof.path, 0x15) == game.state_root, "referee: header not under the agreed state"
    fields: commitments.StateHeader = commitments._decode_header(header)
    if cursor:
        return [convert(fields.epoch, uint256), convert(fields.position, uint256)]
    return [convert(fields.seed, uint256), convert(fields.step, uint256)]


@internal
@view
def _input_root(game: Game, ref: host_rules.Read, proof: InputProof) -> bytes32:
    """
    @notice The tensor root of an input of entry j, proven against the agreed state r_t (a state
            tensor) or the agreed prefix P_{j-1} (an output of an earlier entry), or a constant's root
            as entry j's skeleton carries it (the rules contract copies it into the read's `a`; the
            skeleton's leaf is under S).
    @param game The game.
    @param ref The input's reference.
    @param proof The defender's proof.
    @return The source tensor's root.
    """
    if ref.kind == REF_STATE:
        assert len(proof.roots) == 1, "referee: one state root"
        index: uint256 = 1 + ref.a
        assert index < game.leaf_count, "referee: no such state tensor"
        assert len(proof.path) == commitments._depth(game.leaf_count), "referee: bad state path"
        leaf: bytes32 = commitments._state_tensor_leaf(proof.leaf_key, proof.roots[0])
        assert commitments._walk(leaf, index, proof.path, 0x15) == game.state_root, "referee: state input not proven"
        return proof.roots[0]
    if ref.kind == REF_CONSTANT:
        assert len(proof.roots) == 1 and proof.roots[0] == convert(ref.a, bytes32), "referee: not the skeleton's constant"
        return proof.roots[0]
    if ref.kind == REF_SELF:
        # entry j's own output roots, bound by its revealed entry leaf
        assert ref.b < len(proof.roots), "referee: no such output"
        leaf: bytes32 = commitments._entry_leaf(game.entry, game.skeleton_leaf, proof.roots)
        assert leaf == game.entry_leaf, "referee: not the revealed entry's outputs"
        return proof.roots[ref.b]
    assert ref.kind == REF_OUTPUT, "referee: input kind not built"
    assert ref.a < game.entry, "referee: not an earlier entry"
    assert ref.b < len(proof.roots), "referee: no such output"
    width: uint256 = self._width(game.record_length)
    assert len(proof.path) == commitments._record_width_depth(width), "referee: bad record path"
    leaf: bytes32 = commitments._entry_leaf(ref.a, proof.leaf_key, proof.roots)
    assert commitments._walk(leaf, ref.a, proof.path, 0x18) == game.previous_prefix, "referee: output input not proven"
    return proof.roots[ref.b]


@internal
@view
def _prove_run(game: Game, read: host_rules.Read, proof: InputProof) -> uint256:
    """
    @notice Prove the run that holds the values a plan reads of one input (`read.count` from element
            `read.first`) under the input's tensor root (which binds the dtype: a binary32 tensor
            cannot be read as bools). The caller takes the values from the run's chunks (binary32;
            bools 0 or 1, 32 a chunk; int64 and binary64 64 bits, 4 a chunk): returning them would
            cost every prove_element a buffer of MAX_FOLD words more memory.
    @param game The game.
    @param read The read (its reference's dtype must be the source's; it reads a prefix of it).
    @param proof The defender's proof of an aligned run holding the read elements.
    @return The position of the first value read in the run's chunks.
    """
    assert read.stride <= 1, "referee: strided reads not built"
    # the caller takes at most MAX_FOLD values of a run: a longer plan must fail, not be cut short
    assert read.count <= MAX_FOLD, "referee: run longer than MAX_FOLD"
    per: uint256 = self._per_chunk(read.code)
    assert proof.first * per <= read.first, "referee: not the rows read"
    offset: uint256 = read.first - per * proof.first
    assert offset + read.count <= per * len(proof.chunks), "referee: not the rows read"
    root: bytes32 = self._input_root(game, read, proof)
    dims: DynArray[uint256, commitments.MAX_NDIM] = []
    for i: uint256 in range(commitments.MAX_NDIM):
        if i >= read.ndim:
            break
        dims.append(read.dims[i])
    assert commitments._element_count(dims) <= commitments._element_count(proof.dims), "referee: input larger than its source"
    assert commitments._verify_run(root, read.code, proof.dims, proof.first, proof.chunks, proof.run_path), "referee: run not proven"
    return offset


@external
@nonreentrant
def prove_element(
    game_id: uint256,
    skeleton: Bytes[4_096],
    proofs: DynArray[InputProof, host_rules.MAX_READS],
    hints: DynArray[uint256, commitments.MAX_NDIM],
    columns: DynArray[bytes32, fold_rules.MAX_COLUMN_PROOF] = [],
):
    """
    @notice The defender proves the input values the disputed element reads; the contract recomputes
            the element and rules (the defender is wrong iff the bits differ from its revealed
            element, NaN as a class).
    @dev HostRules.vy plans the element: the rule, its parameters and the runs it reads (e.g. an
         activation: each input at the element's own index; `linear`: row r of x and row n of W,
         zipped term by term, then b[n]). proofs[i] proves the run of reads[i].
    @param game_id A game in PROOF.
    @param skeleton Entry j's skeleton (its leaf must be the revealed entry's).
    @param proofs One proof per run the plan reads, in its order.
    @param hints What the skeleton holds only hashed and the plan needs: a move's strides (HostRules
           checks them against the skeleton's hash); empty for other kernels.
    @param columns The column proofs (`_column_values`) of the reads whose proof has no run chunks,
           in the plan's order, back to back; every word must be used.
    """
    self._defender_move(game_id, STAGE_PROOF)
    game: Game = self.games[game_id]
    # the skeleton is entry j's: its leaf was proven under S at j when the entry was revealed
    assert commitments._skeleton_leaf(skeleton) == game.skeleton_leaf, "referee: not the revealed entry's skeleton"
    code: uint256 = self._output_code(game.wide_code)
    index: uint256 = self._per_chunk(code) * game.chunk_index + game.element
    plan: host_rules.Plan = staticcall HostRules(RULES[game.rules]).plan(skeleton, game.output, index, hints)
    assert len(proofs) == len(plan.reads), "referee: wrong number of inputs"
    values: DynArray[uint256, 1_024] = []
    zipped_first: DynArray[uint256, MAX_FOLD] = []
    cursor: uint256 = 0
    # a fold piece from a running value (FoldRules) reads it first: its two columns are zipped after it
    zip_at: uint256 = 0
    if plan.zipped and plan.reads[0].kind == REF_SELF:
        zip_at = 1
    # Each read's values go straight where they belong (no run buffer: memory is most of this call's gas):
    # the first zipped column aside, the second interleaved with it, any other appended.
    for i: uint256 in range(host_rules.MAX_READS):
        if i >= len(plan.reads):
            break
        read: host_rules.Read = plan.reads[i]
        sink: uint256 = SINK_APPEND
        if plan.zipped and i == zip_at:
            sink = SINK_ASIDE
        elif plan.zipped and i == zip_at + 1:
            sink = SINK_ZIP
        if len(proofs[i].chunks) == 0:
            assert proofs[i].first == 0 and len(proofs[i].run_path) == 0, "referee: a column proof has no run"
            assert read.count >= 1 and read.count <= MAX_FOLD and read.stride >= 1, "referee: not a column read"
            root: bytes32 = self._input_root(game, read, proofs[i])
            assert read.code == commitments.DTYPE_FLOAT32, "referee: input not binary32"
            dims: DynArray[uint256, commitments.MAX_NDIM] = []
            for d: uint256 in range(commitments.MAX_NDIM):
                if d >= read.ndim:
                    break
                dims.append(read.dims[d])
            chunk_count: uint256 = commitments._chunk_count(commitments.DTYPE_FLOAT32, proofs[i].dims)
            assert commitments._element_count(dims) <= commitments._element_count(proofs[i].dims), "referee: input larger than its source"
            assert read.first + (read.count - 1) * read.stride < commitments._element_count(dims), "referee: read outside its input"
            known: uint256 = 0
            chunk: bytes32 = empty(bytes32)
            positions: uint256[MAX_FOLD] = empty(uint256[MAX_FOLD])
            nodes: bytes32[MAX_FOLD] = empty(bytes32[MAX_FOLD])
            for t: uint256 in range(MAX_FOLD):
                if t >= read.count:
                    break
                element: uint256 = read.first + t * read.stride
                if known == 0 or positions[known - 1] != element // 8:
                    chunk = columns[cursor]
                    cursor += 1
                    positions[known] = element // 8
                    nodes[known] = commitments._chunk_leaf(chunk)
                    known += 1
                value: uint256 = (convert(chunk, uint256) >> (224 - 32 * (element % 8))) & BINARY32_BITS
                if sink == SINK_ASIDE:
                    zipped_first.append(value)
                elif sink == SINK_ZIP:
                    values.append(zipped_first[t])
                    values.append(value)
                else:
                    values.append(value)
            depth: uint256 = commitments._depth(chunk_count)
            for level: uint256 in range(commitments.MAX_TENSOR_DEPTH):
                if level >= depth:
                    break
                parents: uint256 = 0
                paired: bool = False
                for t: uint256 in range(MAX_FOLD):
                    if t >= known:
                        break
                    if paired:
                        paired = False
                        continue
                    position: uint256 = positions[t]
                    node: bytes32 = empty(bytes32)
                    if position % 2 == 0 and t + 1 < known and positions[t + 1] == position + 1:
                        node = commitments._tensor_node(nodes[t], nodes[t + 1])
                        paired = True
                    else:
                        sibling: bytes32 = columns[cursor]
                        cursor += 1
                        if position % 2 == 1:
                            node = commitments._tensor_node(sibling, nodes[t])
                        else:
                            node = commitments._tensor_node(nodes[t], sibling)
                    nodes[parents] = node
                    positions[parents] = position // 2
                    parents += 1
                known = parents
            assert commitments._tensor_root(commitments.DTYPE_FLOAT32, proofs[i].dims, nodes[0]) == root, "referee: column not proven"
        elif read.kind == REF_HEADER:
            pair: uint256[2] = self._header_values(game, proofs[i], read.first != 0)
            for t: uint256 in range(2):
                if sink == SINK_ASIDE:
                    zipped_first.append(pair[t])
                elif sink == SINK_ZIP:
                    values.append(zipped_first[t])
                    values.append(pair[t])
                else:
                    values.append(pair[t])
        else:
            offset: uint256 = self._prove_run(game, read, proofs[i])
            per: uint256 = self._per_chunk(read.code)
            for t: uint256 in range(MAX_FOLD):
                if t >= read.count:
                    break
                at: uint256 = offset + t
                value: uint256 = commitments._element_of_chunk(proofs[i].chunks[at // per], read.code, at % per)
                if sink == SINK_ASIDE:
                    zipped_first.append(value)
                elif sink == SINK_ZIP:
                    values.append(zipped_first[t])
                    values.append(value)
                else:
                    values.append(value)
    assert cursor == len(columns), "referee: column words left over"
    referee: address = REFEREE
    if plan.rule == element_rules.RULE_CLIP_PIECE or plan.rule == element_rules.RULE_CLIP_SCALE:
        referee = CLIP
    bits: uint256 = staticcall ElementReferee(referee).element(plan.rule, plan.params, values)
    claimed: uint256 = commitments._element_of_chunk(game.chunk, code, game.element)
    same: bool = bits == claimed
    if code == commitments.DTYPE_FLOAT32:
        same = same or (bits & BINARY32_MAGNITUDE > BINARY32_INF and claimed & BINARY32_MAGNITUDE > BINARY32_INF)
    elif code == commitments.DTYPE_FLOAT64:
        same = same or (bits & BINARY64_MAGNITUDE > BINARY64_INF and claimed & BINARY64_MAGNITUDE > BINARY64_INF)
    self._rule(game_id, not same)


@external
@nonreentrant
def reveal_state(game_id: uint256, leaves: DynArray[bytes32, state_link.MAX_LINK_LEAVES]):
    """
    @notice The defender reveals every leaf of its r_{t+1} (the header leaf, then one per tensor in
            sorted-name order); they must build r_{t+1}. The `StateRevealed` event carries them to
            the challenger.
    @param game_id A game in REVEAL.
    @param leaves The leaf_count leaves.
    """
    self._defender_move(game_id, STAGE_REVEAL)
    assert len(leaves) == self.games[game_id].leaf_count, "referee: not every leaf"
    root: bytes32 = staticcall StateLink(LINK).state_root(leaves)
    assert root == self.games[game_id].next_root, "referee: leaves do not build the state"
    log StateRevealed(game_id=game_id, leaves=leaves)
    self._enter(game_id, STAGE_LEAF)


@external
@nonreentrant
def dispute_leaf(game_id: uint256, index: uint256):
    """
    @notice The challenger names the leaf of r_{t+1} it disputes: a tensor leaf (`prove_link`) or the
            header, leaf 0 (`prove_header_link`); the defender's LINK clock starts.
    @param game_id A game in LEAF.
    @param index The leaf, 0 … leaf_count - 1.
    """
    self._challenger_move(game_id, STAGE_LEAF)
    assert index < self.games[game_id].leaf_count, "referee: no such leaf"
    self.games[game_id].link_leaf = index
    self._enter(game_id, STAGE_LINK)


@external
@nonreentrant
def prove_link(game_id: uint256, proof: state_link.LinkProof):
    """
    @notice The defender proves the disputed leaf 1 + a of r_{t+1} (`lib/state_link.vy`): the state
            map (leaf L under S) names the entry output that becomes tensor a (or none: unchanged);
            the tensor's name hash and root are leaf 1 + a of the agreed r_t; that entry's leaf is
            under the agreed P_{L-1}; leaf 1 + a of r_{t+1} is the same name with that output's root
            (or the old root). All proven: the defender is right. A defender that cannot prove loses
            on its clock.
    @param game_id A game in LINK.
    @param proof The proofs (checked by StateLink, which reverts naming the first failing part).
    """
    self._defender_move(game_id, STAGE_LINK)
    game: Game = self.games[game_id]
    claim: state_link.LinkClaim = state_link.LinkClaim(
        skeleton_root=game.skeleton_root,
        record_length=game.record_length,
        last_prefix=game.previous_prefix,
        state_root=game.state_root,
        next_root=game.next_root,
        leaf_count=game.leaf_count,
        leaf=game.link_leaf,
    )
    assert staticcall StateLink(LINK).verify_link(claim, proof), "referee: link not proven"
    self._rule(game_id, False)


@external
@nonreentrant
def prove_header_link(game_id: uint256, proof: state_link.HeaderLinkProof):
    """
    @notice The defender proves the disputed header leaf (0) of r_{t+1} (`lib/state_link.vy`): r_t's
            header is leaf 0 of the agreed r_t, r_{t+1}'s is leaf 0 of r_{t+1}, and the latter is what
            one optimizer step makes of the former (step, boundary, data cursor, RNG counters, steps to
            the boundary; the rest carried over). Proven: the defender is right. A defender that
            cannot prove loses on its clock.
    @param game_id A game in LINK whose disputed leaf is 0.
    @param proof The two headers and their paths (checked by StateLink, which reverts naming the
           first failing part).
    """
    self._defender_move(game_id, STAGE_LINK)
    game: Game = self.games[game_id]
    claim: state_link.LinkClaim = state_link.LinkClaim(
        skeleton_root=game.skeleton_root,
        record_length=game.record_length,
        last_prefix=game.previous_prefix,
        state_root=game.state_root,
        next_root=game.next_root,
        leaf_count=game.leaf_count,
        leaf=game.link_leaf,
    )
    assert staticcall StateLink(LINK).verify_header_link(claim, proof), "referee: header not proven"
    self._rule(game_id, False)


@external
@nonreentrant
def timeout(game_id: uint256):
    """
    @notice The party that owed a host move (RECORD, ENTRY, PROOF, REVEAL, LINK: the defender; OUTPUT,
            ELEMENT, LEAF: the challenger) missed its deadline: it loses. Anyone may call. (A sub-game's own `timeout`
            ends it; `advance` then carries the result here.)
    @param game_id A game awaiting a host move past its deadline.
    """
    stage: uint8 = self.games[game_id].stage
    defender_owes: bool = (
        stage == STAGE_RECORD or stage == STAGE_ENTRY or stage == STAGE_PROOF or stage == STAGE_REVEAL or stage == STAGE_LINK
    )
    challenger_owes: bool = stage == STAGE_OUTPUT or stage == STAGE_ELEMENT or stage == STAGE_LEAF
    assert defender_owes or challenger_owes, "referee: no host move due"
    assert block.timestamp > self.games[game_id].deadline, "referee: deadline not passed"
    self._rule(game_id, defender_owes)


@view
@external
def ruling_of(game_id: uint256) -> (bool, bool, bool):
    """
    @notice What the Disputes contract reads: (decided, defender_wrong, escalated). An ESCALATED game
            (a disputed value without a host check: level 2, the arbiter judges the one pinned call)
            is undecided here.
    @param game_id The game.
    @return Whether the game is decided, whether the defender lost, whether it escalated.
    """
    stage: uint8 = self.games[game_id].stage
    decided: bool = stage == STAGE_DECIDED
    return decided, decided and self.games[game_id].defender_wrong, stage == STAGE_ESCALATED
