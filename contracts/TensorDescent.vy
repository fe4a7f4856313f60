# pragma version ~=0.4.3
"""
@title TensorDescent
@notice The element-narrowing game of level 3 (docs/referee.md): once an operation is pinned, the
        DEFENDER (the worker) asserts an output tensor root that the CHALLENGER disputes. The game
        walks down the tensor's chunk tree (keccak, domain bytes 0x10 leaf, 0x11 node, 0x12 root,
        zero-word padding; `lib/commitments.vy`) to one chunk whose bytes the defender must show.
        1. A host (a contract named once by `wire`) opens a game: (defender, challenger, tensor
           root, dtype code, shape, levels per move m, move_seconds). The current node is the root
           of the data tree, at height d = ceil(log2(chunk count)).
        2. The defender posts the 2^s descendants s = min(m, height) levels below the current node
           (`post`); they must fold to it (at the top: fold to the data root whose tensor root, with
           the dtype and shape, is the asserted one).
        3. The challenger names one descendant it disputes, resubmitting the posted values
           (`choose`). A descendant whose whole subtree is padding must be that subtree's root Z_h
           (Z_0 the zero word, Z_{h+1} = keccak256(0x11 ‖ Z_h ‖ Z_h)): naming one equal to it is
           refused (there is nothing to dispute), naming any other ends the game at once with the
           defender wrong (PADDING_WRONG). Repeat from 2 until the node is a chunk
           leaf.
        4. The defender reveals the chunk (`reveal`): its leaf must be the node. The game is PINNED
           at (chunk index, chunk); the host then checks the chunk's elements. A last chunk whose
           bytes past the tensor's end are not zero ends the game with the defender wrong
           (PADDING_WRONG): the commitment pads with zero bytes.
        Every move is due within `move_seconds` of the previous one (of the opening for the first);
        after that deadline anyone may call `timeout` and the party that owed the move loses. The
        clock, the host rule and the outcome view follow `Bisection.vy`.
@dev No external calls leave this contract: the host reads `outcome_of` (callback-free); the locks
     are kept for the house rule. The fields every move touches share one packed storage word
     (`clock`), as in `Bisection.vy`; the shape is one more word. The defender's descendants of a
     round are kept as one hash (the challenger resubmits them from the `Posted` event as calldata). Why the honest challenger
     always wins: the defender's node differs from the true one and its descendants fold to it, so
     (keccak being collision resistant) one descendant differs from the true one; following such a
     descendant down to height 0 leaves a chunk leaf that differs from the true leaf, so the
     revealed chunk's bytes differ from the true output's.
"""

from .lib import commitments

# Most levels a defender posts per move: 2**5 = 32 descendants.
MAX_LEVELS: public(constant(uint256)) = 5
MAX_CHILDREN: public(constant(uint256)) = 32
# Longest allowed move window.
MAX_MOVE_SECONDS: public(constant(uint256)) = 30 * 86_400
# Most hosts `wire` can name.
MAX_HOSTS: public(constant(uint256)) = 8

# The `clock` word, low bits first: status 8 bits, round 8, levels 8, dtype code 8, ndim 8, height 8,
# move_seconds 32, deadline 64, position 48, byte_length 64. The bounds keep every field inside its
# width: height <= 40 (at most 2**40 chunks), so round <= 41 and position < 2**40; byte_length
# <= 32 * 2**40.
ROUND_SHIFT: constant(uint256) = 8
LEVELS_SHIFT: constant(uint256) = 16
CODE_SHIFT: constant(uint256) = 24
NDIM_SHIFT: constant(uint256) = 32
HEIGHT_SHIFT: constant(uint256) = 40
MOVE_SHIFT: constant(uint256) = 48
DEADLINE_SHIFT: constant(uint256) = 80
POSITION_SHIFT: constant(uint256) = 144
LENGTH_SHIFT: constant(uint256) = 192
MASK_8: constant(uint256) = (1 << 8) - 1
MASK_32: constant(uint256) = (1 << 32) - 1
MASK_48: constant(uint256) = (1 << 48) - 1
MASK_64: constant(uint256) = (1 << 64) - 1

# Game status. The first two are the running states (whose move it is); the others are final.
STATUS_NONE: public(constant(uint8)) = 0
STATUS_DEFENDER_TO_MOVE: public(constant(uint8)) = 1
STATUS_CHALLENGER_TO_MOVE: public(constant(uint8)) = 2
STATUS_PINNED: public(constant(uint8)) = 3
STATUS_DEFENDER_TIMED_OUT: public(constant(uint8)) = 4
STATUS_CHALLENGER_TIMED_OUT: public(constant(uint8)) = 5
STATUS_PADDING_WRONG: public(constant(uint8)) = 6


# A game as `games(id)` returns it.
struct Game:
    host: address
    defender: address
    challenger: address
    tensor_root: bytes32
    code: uint256
    dims: DynArray[uint256, commitments.MAX_NDIM]
    byte_length: uint256
    chunk_count: uint256
    levels: uint256
    move_seconds: uint256
    height: uint256
    position: uint256
    node: bytes32
    status: uint8
    round: uint256
    deadline: uint256
    children_hash: bytes32
    chunk: bytes32


# A game as it is stored: the fields every move reads or writes share one word (`clock`), so a move
# pays one cold read and one write for them instead of one per field (Vyper does not pack storage).
struct StoredGame:
    host: address
    defender: address
    challenger: address
    tensor_root: bytes32
    shape: uint256
    node: bytes32
    children_hash: bytes32
    chunk: bytes32
    clock: uint256


# `clock`, unpacked in memory.
struct Clock:
    status: uint8
    round: uint256
    levels: uint256
    code: uint256
    ndim: uint256
    height: uint256
    move_seconds: uint256
    deadline: uint256
    position: uint256
    byte_length: uint256


deployer: public(immutable(address))
# Contracts allowed to open games; fixed by the one `wire` call.
is_host: public(HashMap[address, bool])
wired: public(bool)
game_count: public(uint256)
_games: HashMap[uint256, StoredGame]


event Wired:
    hosts: DynArray[address, MAX_HOSTS]


event GameOpened:
    game_id: indexed(uint256)
    host: indexed(address)
    defender: indexed(address)
    challenger: address
    tensor_root: bytes32
    chunk_count: uint256
    height: uint256
    levels: uint256
    move_seconds: uint256
    deadline: uint256


event Posted:
    game_id: indexed(uint256)
    round: uint256
    height: uint256
    position: uint256
    children: DynArray[bytes32, MAX_CHILDREN]
    deadline: uint256


event Chosen:
    game_id: indexed(uint256)
    round: uint256
    child: uint256
    height: uint256
    position: uint256
    node: bytes32
    deadline: uint256


event Pinned:
    game_id: indexed(uint256)
    chunk_index: uint256
    chunk: bytes32


event PaddingWrong:
    game_id: indexed(uint256)
    height: uint256
    position: uint256


event TimedOut:
    game_id: indexed(uint256)
    status: uint8
    loser: address


@deploy
def __init__():
    """
    @notice Deploy; the deploying address may name the hosts once with `wire`.
    """
    deployer = msg.sender


@external
@nonreentrant
def wire(hosts: DynArray[address, MAX_HOSTS]):
    """
    @notice Name the contracts that may open games, once. Deployer only.
    @dev The deployer's only privilege; after it the host set is fixed forever and the deployer has
         no role. Hosts only open games; moves belong to the two parties.
    @param hosts The host contracts (non-zero, at least one).
    """
    assert msg.sender == deployer, "descent: not deployer"
    assert not self.wired, "descent: already wired"
    assert len(hosts) > 0, "descent: no host"
    for host: address in hosts:
        assert host != empty(address), "descent: zero host"
        self.is_host[host] = True
    self.wired = True
    log Wired(hosts=hosts)


@external
@nonreentrant
def open_game(
    defender: address,
    challenger: address,
    tensor_root: bytes32,
    code: uint256,
    dims: DynArray[uint256, commitments.MAX_NDIM],
    levels: uint256,
    move_seconds: uint256,
) -> uint256:
    """
    @notice Open a descent over the defender's output tensor. A wired host only; the caller is
            recorded as the game's host. The defender moves first, within `move_seconds`.
    @param defender The party that asserts `tensor_root` (the worker).
    @param challenger The party that disputes it (distinct from the defender).
    @param tensor_root The asserted tensor root (non-zero).
    @param code The output's dtype code (1 binary32, 2 int64, 3 binary64, 4 bool).
    @param dims The output's shape (at least one element; at most 2**40 chunks).
    @param levels m, 1 ... MAX_LEVELS: tree levels the defender opens per move (2**m descendants).
    @param move_seconds Seconds each party has for each move, 1 ... MAX_MOVE_SECONDS.
    @return The new game id (ids start at 1).
    """
    assert self.is_host[msg.sender], "descent: not a host"
    assert defender != empty(address) and challenger != empty(address), "descent: zero party"
    assert defender != challenger, "descent: defender is the challenger"
    assert tensor_root != empty(bytes32), "descent: zero root"
    assert levels >= 1 and levels <= MAX_LEVELS, "descent: bad levels"
    assert move_seconds >= 1 and move_seconds <= MAX_MOVE_SECONDS, "descent: bad move window"
    size: uint256 = commitments._element_size(code)
    byte_length: uint256 = commitments._element_count(dims) * size
    assert byte_length != 0, "descent: empty tensor"
    chunk_count: uint256 = (byte_length + 31) // 32
    height: uint256 = commitments._depth(chunk_count)
    game_id: uint256 = self.game_count + 1
    self.game_count = game_id
    deadline: uint256 = block.timestamp + move_seconds
    # only the non-zero fields are written: node, children_hash and chunk of a new id are still zero
    self._games[game_id].host = msg.sender
    self._games[game_id].defender = defender
    self._games[game_id].challenger = challenger
    self._games[game_id].tensor_root = tensor_root
    self._games[game_id].shape = commitments._pack_dims(dims)
    self._games[game_id].clock = self._pack(
        Clock(
            status=STATUS_DEFENDER_TO_MOVE,
            round=1,
            levels=levels,
            code=code,
            ndim=len(dims),
            height=height,
            move_seconds=move_seconds,
            deadline=deadline,
            position=0,
            byte_length=byte_length,
        )
    )
    log GameOpened(
        game_id=game_id,
        host=msg.sender,
        defender=defender,
        challenger=challenger,
        tensor_root=tensor_root,
        chunk_count=chunk_count,
        height=height,
        levels=levels,
        move_seconds=move_seconds,
        deadline=deadline,
    )
    return game_id


@internal
@view
def _defender_clock(game_id: uint256) -> Clock:
    """
    @notice The game's clock, after checking it is the defender's turn, the caller is the defender
            and the deadline has not passed.
    @param game_id The game.
    @return The unpacked clock.
    """
    clock: Clock = self._unpack(self._games[game_id].clock)
    assert clock.status == STATUS_DEFENDER_TO_MOVE, "descent: not the defender's turn"
    assert msg.sender == self._games[game_id].defender, "descent: not the defender"
    assert block.timestamp <= clock.deadline, "descent: move too late"
    return clock


@internal
@view
def _matches_node(game_id: uint256, clock: Clock, subtree: bytes32) -> bool:
    """
    @notice Whether `subtree` (the fold of the posted descendants, or a chunk leaf) is the node.
    @dev In the first round the node is the data root, known only through the tensor root.
    @param game_id The game.
    @param clock Its clock.
    @param subtree The node the defender's values lead to.
    @return Whether it is the current node.
    """
    if clock.round == 1:
        root: bytes32 = commitments._tensor_root_packed(clock.code, clock.ndim, self._games[game_id].shape, subtree)
        return root == self._games[game_id].tensor_root
    return subtree == self._games[game_id].node


@external
@nonreentrant
def post(game_id: uint256, children: DynArray[bytes32, MAX_CHILDREN]):
    """
    @notice The defender's move above the leaves: the 2**s descendants, s = min(m, height), of the
            current node, left to right. The game's defender only, on its turn, by the deadline.
    @param game_id The game.
    @param children The descendants; they must fold (0x11 nodes) to the current node.
    """
    clock: Clock = self._defender_clock(game_id)
    assert clock.height > 0, "descent: reveal the chunk"
    steps: uint256 = min(clock.levels, clock.height)
    assert len(children) == 1 << steps, "descent: wrong number of children"
    nodes: bytes32[MAX_CHILDREN] = empty(bytes32[MAX_CHILDREN])
    for i: uint256 in range(MAX_CHILDREN):
        if i >= len(children):
            break
        nodes[i] = children[i]
    width: uint256 = len(children)
    for _: uint256 in range(MAX_LEVELS):
        if width == 1:
            break
        width >>= 1
        for i: uint256 in range(MAX_CHILDREN // 2):
            if i >= width:
                break
            nodes[i] = commitments._tensor_node(nodes[2 * i], nodes[2 * i + 1])
    assert self._matches_node(game_id, clock, nodes[0]), "descent: children do not fold to the node"
    clock.status = STATUS_CHALLENGER_TO_MOVE
    clock.deadline = block.timestamp + clock.move_seconds
    self._games[game_id].children_hash = keccak256(abi_encode(children))
    self._games[game_id].clock = self._pack(clock)
    log Posted(
        game_id=game_id,
        round=clock.round,
        height=clock.height,
        position=clock.position,
        children=children,
        deadline=clock.deadline,
    )


@internal
@pure
def _padding_node(height: uint256) -> bytes32:
    """
    @notice The root of an all-padding subtree of the given height: Z_0 = the zero word (a padding
            leaf is not hashed), Z_{h+1} = keccak256(0x11 ‖ Z_h ‖ Z_h).
    @param height The subtree's height (at most 40).
    @return Z_height.
    """
    node: bytes32 = empty(bytes32)
    for _: uint256 in range(height, bound=commitments.MAX_TENSOR_DEPTH):
        node = commitments._tensor_node(node, node)
    return node


@external
@nonreentrant
def choose(game_id: uint256, child: uint256, children: DynArray[bytes32, MAX_CHILDREN]):
    """
    @notice The challenger's move: the descendant it disputes. The game's challenger only, on its
            turn, by the deadline.
    @dev `children` must be exactly what the defender posted this round (from the `Posted` event).
         A descendant covering only padding is, in the true tree, the root Z_h of an all-padding
         subtree of its height (`_padding_node`): naming one equal to it is refused, naming any other
         ends the game with the defender wrong. The children hash is
         left in place: only a post, which overwrites it, makes it current again.
    @param game_id The game.
    @param child Its place among the posted descendants, 0 ... 2**s - 1.
    @param children The defender's descendants of this round.
    """
    clock: Clock = self._unpack(self._games[game_id].clock)
    assert clock.status == STATUS_CHALLENGER_TO_MOVE, "descent: not the challenger's turn"
    assert msg.sender == self._games[game_id].challenger, "descent: not the challenger"
    assert block.timestamp <= clock.deadline, "descent: move too late"
    assert keccak256(abi_encode(children)) == self._games[game_id].children_hash, "descent: children differ from the posted ones"
    assert child < len(children), "descent: child out of range"
    round: uint256 = clock.round
    steps: uint256 = min(clock.levels, clock.height)
    clock.height -= steps
    clock.position = (clock.position << steps) | child
    node: bytes32 = children[child]
    self._games[game_id].node = node
    if clock.position << clock.height >= (clock.byte_length + 31) // 32:
        assert node != self._padding_node(clock.height), "descent: padding is agreed"
        clock.status = STATUS_PADDING_WRONG
        clock.deadline = 0
        self._games[game_id].clock = self._pack(clock)
        log Chosen(game_id=game_id, round=round, child=child, height=clock.height, position=clock.position, node=node, deadline=0)
        log PaddingWrong(game_id=game_id, height=clock.height, position=clock.position)
        return
    clock.status = STATUS_DEFENDER_TO_MOVE
    clock.round = round + 1
    clock.deadline = block.timestamp + clock.move_seconds
    self._games[game_id].clock = self._pack(clock)
    log Chosen(
        game_id=game_id, round=round, child=child, height=clock.height, position=clock.position, node=node, deadline=clock.deadline
    )


@external
@nonreentrant
def reveal(game_id: uint256, chunk: bytes32):
    """
    @notice The defender's last move: the bytes of the chunk the descent reached. The game's
            defender only, on its turn, by the deadline, once the node is a leaf.
    @dev The last chunk's bytes past the tensor's end must be zero (the commitment's padding);
         otherwise the defender is wrong.
    @param game_id The game.
    @param chunk The 32 bytes whose leaf keccak256(0x10 ‖ chunk) is the node.
    """
    clock: Clock = self._defender_clock(game_id)
    assert clock.height == 0, "descent: not at a leaf"
    assert self._matches_node(game_id, clock, commitments._chunk_leaf(chunk)), "descent: chunk is not the leaf"
    self._games[game_id].chunk = chunk
    clock.deadline = 0
    used: uint256 = clock.byte_length - 32 * clock.position
    if used < 32 and convert(chunk, uint256) % (1 << (8 * (32 - used))) != 0:
        clock.status = STATUS_PADDING_WRONG
        self._games[game_id].clock = self._pack(clock)
        log PaddingWrong(game_id=game_id, height=0, position=clock.position)
        return
    clock.status = STATUS_PINNED
    self._games[game_id].clock = self._pack(clock)
    log Pinned(game_id=game_id, chunk_index=clock.position, chunk=chunk)


@external
@nonreentrant
def timeout(game_id: uint256):
    """
    @notice The party that owed the move missed its deadline: it loses. Anyone may call.
    @param game_id A running game whose deadline has passed.
    """
    clock: Clock = self._unpack(self._games[game_id].clock)
    running: uint8 = clock.status
    assert running == STATUS_DEFENDER_TO_MOVE or running == STATUS_CHALLENGER_TO_MOVE, "descent: game not running"
    assert block.timestamp > clock.deadline, "descent: deadline not passed"
    clock.status = STATUS_DEFENDER_TIMED_OUT
    loser: address = self._games[game_id].defender
    if running == STATUS_CHALLENGER_TO_MOVE:
        clock.status = STATUS_CHALLENGER_TIMED_OUT
        loser = self._games[game_id].challenger
    self._games[game_id].clock = self._pack(clock)
    log TimedOut(game_id=game_id, status=clock.status, loser=loser)


@view
@external
def games(game_id: uint256) -> Game:
    """
    @notice A game, every field unpacked (status 0 for an id never opened).
    @param game_id The game.
    @return host, defender, challenger, tensor_root, code, dims, byte_length, chunk_count, levels,
            move_seconds, height, position, node, status, round, deadline, children_hash, chunk.
    """
    stored: StoredGame = self._games[game_id]
    clock: Clock = self._unpack(stored.clock)
    return Game(
        host=stored.host,
        defender=stored.defender,
        challenger=stored.challenger,
        tensor_root=stored.tensor_root,
        code=clock.code,
        dims=commitments._unpack_dims(stored.shape, clock.ndim),
        byte_length=clock.byte_length,
        chunk_count=(clock.byte_length + 31) // 32,
        levels=clock.levels,
        move_seconds=clock.move_seconds,
        height=clock.height,
        position=clock.position,
        node=stored.node,
        status=clock.status,
        round=clock.round,
        deadline=clock.deadline,
        children_hash=stored.children_hash,
        chunk=stored.chunk,
    )


@view
@external
def outcome_of(game_id: uint256) -> (uint8, uint256, uint256, bytes32):
    """
    @notice What the host reads: (status, height, position, chunk). PINNED: the chunk at index
            `position` is `chunk` (the defender's bytes, to be checked element by element);
            PADDING_WRONG and DEFENDER_TIMED_OUT: the defender lost; CHALLENGER_TIMED_OUT: the
            challenger lost; a running game: where the descent stands.
    @dev A host must also check `games(game_id).host` is itself before acting on an outcome.
    @param game_id The game.
    @return status, height of the current node, its position at that height, the revealed chunk.
    """
    clock: Clock = self._unpack(self._games[game_id].clock)
    return clock.status, clock.height, clock.position, self._games[game_id].chunk


@internal
@pure
def _pack(clock: Clock) -> uint256:
    """
    @notice The `clock` word of `clock` (layout at the *_SHIFT constants).
    @dev Every field is inside its width by the bounds `open_game` checks (see the layout comment).
    @param clock The unpacked fields.
    @return The packed word.
    """
    return (
        convert(clock.status, uint256)
        | (clock.round << ROUND_SHIFT)
        | (clock.levels << LEVELS_SHIFT)
        | (clock.code << CODE_SHIFT)
        | (clock.ndim << NDIM_SHIFT)
        | (clock.height << HEIGHT_SHIFT)
        | (clock.move_seconds << MOVE_SHIFT)
        | (clock.deadline << DEADLINE_SHIFT)
        | (clock.position << POSITION_SHIFT)
        | (clock.byte_length << LENGTH_SHIFT)
    )


@internal
@pure
def _unpack(word: uint256) -> Clock:
    """
    @notice The fields of a `clock` word.
    @param word The packed word.
    @return The unpacked fields.
    """
    return Clock(
        status=convert(word & MASK_8, uint8),
        round=(word >> ROUND_SHIFT) & MASK_8,
        levels=(word >> LEVELS_SHIFT) & MASK_8,
        code=(word >> CODE_SHIFT) & MASK_8,
        ndim=(word >> NDIM_SHIFT) & MASK_8,
        height=(word >> HEIGHT_SHIFT) & MASK_8,
        move_seconds=(word >> MOVE_SHIFT) & MASK_32,
        deadline=(word >> DEADLINE_SHIFT) & MASK_64,
        position=(word >> POSITION_SHIFT) & MASK_48,
        byte_length=(word >> LENGTH_SHIFT) & MASK_64,
    )
