# pragma version ~=0.4.3
"""
@title Bisection
@notice The level-2 dispute game: a k-ary bisection with a clock over a sequence of commitments
        c_0 … c_n, where c_0 is agreed by both parties and c_n is asserted by the DEFENDER (the
        worker) and disputed by the CHALLENGER. It narrows the dispute to one index j with c_j
        agreed and c_{j+1} disputed. The same game runs over the optimizer steps of a segment
        and over the operations of one step: what c_j means is the host's business, this contract
        only sees bytes32 values.
        1. A host (a contract named once by `wire`) opens a game: (defender, challenger, c_0, c_n,
           n, k, move_seconds). The interval is [lo, hi] = [0, n]; with n = 1 it is pinned at once.
        2. The defender posts the commitments at the interior split points of [lo, hi] (`post`).
        3. The challenger names the part [p_i, p_{i+1}] whose start it accepts and whose end it
           disputes, resubmitting the posted values (`choose`). Repeat from 2 until hi = lo + 1:
           the game is PINNED at (lo, c_lo, c_hi).
        Split points of [lo, hi] with L = hi - lo >= 2: parts = min(k, L) and
        p_j = lo + (j * L) // parts for j = 0 … parts (integer division). Since parts <= L the points
        are strictly increasing, and every part is at most ceil(L / parts) < L long, so the interval
        strictly shrinks each round and a game ends after at most ceil(log_k(n)) rounds.
        Every move is due within `move_seconds` of the previous one (of the opening for the first);
        after that deadline anyone may call `timeout` and the party that owed the move loses.
@dev No external calls leave this contract: the host reads `outcome_of` (callback-free), so there is
     no reentrancy surface; the locks are kept for the house rule. The fields every move touches share
     one packed storage word (`clock`). The defender's values of a round are kept as one hash (the
     challenger resubmits them from the `Posted` event as calldata), which costs a fraction of storing
     k - 1 words per round. A zero commitment is refused everywhere, so it can never be confused with
     an empty slot.
"""

# Largest arity k, and so at most MAX_ARITY - 1 interior values per round.
MAX_ARITY: public(constant(uint256)) = 32
# Largest sequence length n (2**64 operations of one step is far beyond any record).
MAX_LENGTH: public(constant(uint256)) = 1 << 64
# Longest allowed move window.
MAX_MOVE_SECONDS: public(constant(uint256)) = 30 * 86_400
# Most hosts `wire` can name.
MAX_HOSTS: public(constant(uint256)) = 8

# The `clock` word, low bits first: status 8 bits, round 8, arity 8, move_seconds 32, deadline 64,
# lo 68, hi 68 (the bounds above keep every field inside its width: rounds <= 64, hi <= 2**64).
ROUND_SHIFT: constant(uint256) = 8
ARITY_SHIFT: constant(uint256) = 16
MOVE_SHIFT: constant(uint256) = 24
DEADLINE_SHIFT: constant(uint256) = 56
LO_SHIFT: constant(uint256) = 120
HI_SHIFT: constant(uint256) = 188
MASK_8: constant(uint256) = (1 << 8) - 1
MASK_32: constant(uint256) = (1 << 32) - 1
MASK_64: constant(uint256) = (1 << 64) - 1
MASK_68: constant(uint256) = (1 << 68) - 1

# Game status. The first two are the running states (whose move it is); the last three are final.
STATUS_NONE: public(constant(uint8)) = 0
STATUS_DEFENDER_TO_MOVE: public(constant(uint8)) = 1
STATUS_CHALLENGER_TO_MOVE: public(constant(uint8)) = 2
STATUS_PINNED: public(constant(uint8)) = 3
STATUS_DEFENDER_TIMED_OUT: public(constant(uint8)) = 4
STATUS_CHALLENGER_TIMED_OUT: public(constant(uint8)) = 5


# A game as `games(id)` returns it.
struct Game:
    host: address
    defender: address
    challenger: address
    arity: uint256
    move_seconds: uint256
    lo: uint256
    hi: uint256
    c_lo: bytes32
    c_hi: bytes32
    status: uint8
    round: uint256
    deadline: uint256
    values_hash: bytes32


# A game as it is stored: the fields every move reads or writes share one word (`clock`), so a move
# pays one cold read and one write for them instead of one per field (Vyper does not pack storage).
struct StoredGame:
    host: address
    defender: address
    challenger: address
    c_lo: bytes32
    c_hi: bytes32
    values_hash: bytes32
    clock: uint256


# `clock`, unpacked in memory.
struct Clock:
    status: uint8
    round: uint256
    arity: uint256
    move_seconds: uint256
    deadline: uint256
    lo: uint256
    hi: uint256


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
    c_0: bytes32
    c_n: bytes32
    n: uint256
    arity: uint256
    move_seconds: uint256
    deadline: uint256


event Posted:
    game_id: indexed(uint256)
    round: uint256
    lo: uint256
    hi: uint256
    values: DynArray[bytes32, MAX_ARITY - 1]
    deadline: uint256


event Chosen:
    game_id: indexed(uint256)
    round: uint256
    part: uint256
    lo: uint256
    hi: uint256
    c_lo: bytes32
    c_hi: bytes32
    deadline: uint256


event Pinned:
    game_id: indexed(uint256)
    index: uint256
    c_lo: bytes32
    c_hi: bytes32


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
         no role. It cannot touch a game: hosts only open games, moves belong to the two parties.
    @param hosts The host contracts (non-zero, at least one).
    """
    assert msg.sender == deployer, "bisection: not deployer"
    assert not self.wired, "bisection: already wired"
    assert len(hosts) > 0, "bisection: no host"
    for host: address in hosts:
        assert host != empty(address), "bisection: zero host"
        self.is_host[host] = True
    self.wired = True
    log Wired(hosts=hosts)


@external
@nonreentrant
def open_game(
    defender: address,
    challenger: address,
    c_0: bytes32,
    c_n: bytes32,
    n: uint256,
    arity: uint256,
    move_seconds: uint256,
) -> uint256:
    """
    @notice Open a game over c_0 … c_n. A wired host only; the caller is recorded as the game's host.
    @dev The defender moves first, within `move_seconds`. With n = 1 the game is pinned at once at
         (0, c_0, c_n) and no move is due.
    @param defender The party that asserts c_n (the worker).
    @param challenger The party that disputes c_n (distinct from the defender).
    @param c_0 The agreed first commitment (non-zero).
    @param c_n The disputed last commitment (non-zero).
    @param n The sequence length, 1 … MAX_LENGTH.
    @param arity k, 2 … MAX_ARITY: the interval is cut into at most k parts each round.
    @param move_seconds Seconds each party has for each move, 1 … MAX_MOVE_SECONDS.
    @return The new game id (ids start at 1).
    """
    assert self.is_host[msg.sender], "bisection: not a host"
    assert defender != empty(address) and challenger != empty(address), "bisection: zero party"
    assert defender != challenger, "bisection: defender is the challenger"
    assert c_0 != empty(bytes32) and c_n != empty(bytes32), "bisection: zero commitment"
    assert n >= 1 and n <= MAX_LENGTH, "bisection: bad length"
    assert arity >= 2 and arity <= MAX_ARITY, "bisection: bad arity"
    assert move_seconds >= 1 and move_seconds <= MAX_MOVE_SECONDS, "bisection: bad move window"
    game_id: uint256 = self.game_count + 1
    self.game_count = game_id
    status: uint8 = STATUS_DEFENDER_TO_MOVE
    deadline: uint256 = block.timestamp + move_seconds
    if n == 1:
        status = STATUS_PINNED
        deadline = 0
    self._games[game_id].host = msg.sender
    self._games[game_id].defender = defender
    self._games[game_id].challenger = challenger
    self._games[game_id].c_lo = c_0
    self._games[game_id].c_hi = c_n
    self._games[game_id].clock = self._pack(
        Clock(status=status, round=1, arity=arity, move_seconds=move_seconds, deadline=deadline, lo=0, hi=n)
    )
    log GameOpened(
        game_id=game_id,
        host=msg.sender,
        defender=defender,
        challenger=challenger,
        c_0=c_0,
        c_n=c_n,
        n=n,
        arity=arity,
        move_seconds=move_seconds,
        deadline=deadline,
    )
    if n == 1:
        log Pinned(game_id=game_id, index=0, c_lo=c_0, c_hi=c_n)
    return game_id


@external
@nonreentrant
def post(game_id: uint256, values: DynArray[bytes32, MAX_ARITY - 1]):
    """
    @notice The defender's move: its commitments at the interior split points p_1 … p_{parts-1}
            of the current interval, in order. The game's defender only, on its turn, by the deadline.
    @dev Overwrites the last round's values hash instead of clearing it in between (a non-zero →
         non-zero write costs a fifth of a zero → non-zero one); a stale hash is never read, since
         `choose` runs only in the challenger's turn that this move opens.
    @param game_id The game.
    @param values c_{p_1} … c_{p_{parts-1}}: exactly parts - 1 non-zero words.
    """
    clock: Clock = self._unpack(self._games[game_id].clock)
    assert clock.status == STATUS_DEFENDER_TO_MOVE, "bisection: not the defender's turn"
    assert msg.sender == self._games[game_id].defender, "bisection: not the defender"
    assert block.timestamp <= clock.deadline, "bisection: move too late"
    parts: uint256 = min(clock.arity, clock.hi - clock.lo)
    assert len(values) == parts - 1, "bisection: wrong number of values"
    for value: bytes32 in values:
        assert value != empty(bytes32), "bisection: zero commitment"
    clock.status = STATUS_CHALLENGER_TO_MOVE
    clock.deadline = block.timestamp + clock.move_seconds
    self._games[game_id].values_hash = keccak256(abi_encode(values))
    self._games[game_id].clock = self._pack(clock)
    log Posted(game_id=game_id, round=clock.round, lo=clock.lo, hi=clock.hi, values=values, deadline=clock.deadline)


@external
@nonreentrant
def choose(game_id: uint256, part: uint256, values: DynArray[bytes32, MAX_ARITY - 1]):
    """
    @notice The challenger's move: part i of the current split, [p_i, p_{i+1}], whose start it
            accepts and whose end it disputes. The game's challenger only, on its turn, by the deadline.
    @dev `values` must be exactly what the defender posted this round (from the `Posted` event);
         the part's ends take their commitments from them (c_lo for i = 0, c_hi for the last part).
         When the part is one step long the game is PINNED there.
    @param game_id The game.
    @param part i, 0 … parts - 1.
    @param values The defender's values of this round.
    """
    clock: Clock = self._unpack(self._games[game_id].clock)
    assert clock.status == STATUS_CHALLENGER_TO_MOVE, "bisection: not the challenger's turn"
    assert msg.sender == self._games[game_id].challenger, "bisection: not the challenger"
    assert block.timestamp <= clock.deadline, "bisection: move too late"
    posted: bytes32 = self._games[game_id].values_hash
    assert keccak256(abi_encode(values)) == posted, "bisection: values differ from the posted ones"
    parts: uint256 = len(values) + 1
    assert part < parts, "bisection: part out of range"
    length: uint256 = clock.hi - clock.lo
    new_lo: uint256 = clock.lo + part * length // parts
    new_hi: uint256 = clock.lo + (part + 1) * length // parts
    c_lo: bytes32 = empty(bytes32)
    c_hi: bytes32 = empty(bytes32)
    if part > 0:
        c_lo = values[part - 1]
        self._games[game_id].c_lo = c_lo
    else:
        c_lo = self._games[game_id].c_lo
    if part + 1 < parts:
        c_hi = values[part]
        self._games[game_id].c_hi = c_hi
    else:
        c_hi = self._games[game_id].c_hi
    round: uint256 = clock.round
    clock.lo = new_lo
    clock.hi = new_hi
    if new_hi - new_lo == 1:
        clock.status = STATUS_PINNED
        clock.deadline = 0
    else:
        clock.status = STATUS_DEFENDER_TO_MOVE
        clock.round = round + 1
        clock.deadline = block.timestamp + clock.move_seconds
    self._games[game_id].clock = self._pack(clock)
    log Chosen(
        game_id=game_id, round=round, part=part, lo=new_lo, hi=new_hi, c_lo=c_lo, c_hi=c_hi, deadline=clock.deadline
    )
    if clock.status == STATUS_PINNED:
        log Pinned(game_id=game_id, index=new_lo, c_lo=c_lo, c_hi=c_hi)


@external
@nonreentrant
def timeout(game_id: uint256):
    """
    @notice The party that owed the move missed its deadline: it loses. Anyone may call.
    @param game_id A running game whose deadline has passed.
    """
    clock: Clock = self._unpack(self._games[game_id].clock)
    running: bool = clock.status == STATUS_DEFENDER_TO_MOVE or clock.status == STATUS_CHALLENGER_TO_MOVE
    assert running, "bisection: game not running"
    assert block.timestamp > clock.deadline, "bisection: deadline not passed"
    loser: address = self._games[game_id].defender
    if clock.status == STATUS_CHALLENGER_TO_MOVE:
        clock.status = STATUS_CHALLENGER_TIMED_OUT
        loser = self._games[game_id].challenger
    else:
        clock.status = STATUS_DEFENDER_TIMED_OUT
    self._games[game_id].clock = self._pack(clock)
    log TimedOut(game_id=game_id, status=clock.status, loser=loser)


@view
@external
def outcome_of(game_id: uint256) -> (uint8, uint256, bytes32, bytes32):
    """
    @notice What the host reads: (status, index, c_lo, c_hi). For a PINNED game, index = j with
            c_j = c_lo agreed and c_{j+1} = c_hi disputed; for a running game, the current interval's
            start and its two end commitments; for a timed-out game, where it stood.
    @dev A host must also check `games(game_id).host` is itself before acting on an outcome.
    @param game_id The game.
    @return status, index (lo), c_lo, c_hi.
    """
    clock: Clock = self._unpack(self._games[game_id].clock)
    return clock.status, clock.lo, self._games[game_id].c_lo, self._games[game_id].c_hi


@view
@external
def games(game_id: uint256) -> Game:
    """
    @notice A game, every field unpacked (status 0 for an id never opened).
    @param game_id The game.
    @return host, defender, challenger, arity, move_seconds, lo, hi, c_lo, c_hi, status, round,
            deadline (0 once ended), values_hash (of the defender's latest values).
    """
    stored: StoredGame = self._games[game_id]
    clock: Clock = self._unpack(stored.clock)
    return Game(
        host=stored.host,
        defender=stored.defender,
        challenger=stored.challenger,
        arity=clock.arity,
        move_seconds=clock.move_seconds,
        lo=clock.lo,
        hi=clock.hi,
        c_lo=stored.c_lo,
        c_hi=stored.c_hi,
        status=clock.status,
        round=clock.round,
        deadline=clock.deadline,
        values_hash=stored.values_hash,
    )


@view
@external
def split_points(game_id: uint256) -> DynArray[uint256, MAX_ARITY + 1]:
    """
    @notice The current interval's split points p_0 = lo … p_parts = hi (empty once the game ended).
    @param game_id The game.
    @return The points at which the defender owes (interior) commitments this round.
    """
    clock: Clock = self._unpack(self._games[game_id].clock)
    points: DynArray[uint256, MAX_ARITY + 1] = []
    if clock.status != STATUS_DEFENDER_TO_MOVE and clock.status != STATUS_CHALLENGER_TO_MOVE:
        return points
    length: uint256 = clock.hi - clock.lo
    parts: uint256 = min(clock.arity, length)
    for j: uint256 in range(MAX_ARITY + 1):
        if j > parts:
            break
        points.append(clock.lo + j * length // parts)
    return points


@internal
@pure
def _pack(clock: Clock) -> uint256:
    """
    @notice The `clock` word of `clock` (layout at the *_SHIFT constants).
    @dev Every field is inside its width by the bounds `open_game` checks: status <= 5, round <= 65,
         arity <= 32, move_seconds <= 30 days, deadline a timestamp, lo < hi <= 2**64.
    @param clock The unpacked fields.
    @return The packed word.
    """
    return (
        convert(clock.status, uint256)
        | (clock.round << ROUND_SHIFT)
        | (clock.arity << ARITY_SHIFT)
        | (clock.move_seconds << MOVE_SHIFT)
        | (clock.deadline << DEADLINE_SHIFT)
        | (clock.lo << LO_SHIFT)
        | (clock.hi << HI_SHIFT)
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
        arity=(word >> ARITY_SHIFT) & MASK_8,
        move_seconds=(word >> MOVE_SHIFT) & MASK_32,
        deadline=(word >> DEADLINE_SHIFT) & MASK_64,
        lo=(word >> LO_SHIFT) & MASK_68,
        hi=(word >> HI_SHIFT) & MASK_68,
    )
